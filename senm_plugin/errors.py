"""The errors the tools raise for input they cannot use; each message names the option or file at fault, and the
verbs print it as one line (no traceback)."""


class GenerateError(RuntimeError):
    """A noise model that cannot be loaded or sampled, or a generation that cannot start or go on."""


class EvaluateError(RuntimeError):
    """An evaluation whose inputs do not fit together."""


class PrepareError(RuntimeError):
    """Data that ``basicsr prepare`` cannot cut into domains."""
