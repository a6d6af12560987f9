"""Tool options given as Python values rather than a command line: a verb's parsed arguments with its defaults."""


def parsed_args(parser, argv, options, prog):
    """``parser.parse_args(argv)`` (the required options) with each of ``options`` (names with underscores) set on
    top; an option the verb does not have raises ValueError naming it."""
    args = parser.parse_args(argv)
    for key, value in options.items():
        if not hasattr(args, key):
            raise ValueError(f'{prog} has no option --{key.replace("_", "-")}')
        setattr(args, key, value)
    return args
