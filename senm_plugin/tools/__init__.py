"""The plugin's command-line tools, one module per ``basicsr`` verb (``prepare``, ``generate``, ``evaluate``,
``demo``, ``export``): each a ``run``-style function taking its options and returning its result, and a thin
``main(argv)`` that parses a command line, calls it and turns the tools' errors into one-line messages."""
