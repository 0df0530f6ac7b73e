"""The one exception type that user-facing input errors raise."""


class InputError(ValueError):
    """Bad user input: the message is one line naming the bad value and what is allowed.

    The CLI prints the message and exits with status 2; the Python API lets it propagate.
    """
