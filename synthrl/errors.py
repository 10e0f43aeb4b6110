"""One exception type for bad user input: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Bad input (a file, an option, a config field). The message must say which and what was expected."""
