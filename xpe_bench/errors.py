"""Errors the CLI turns into a clear message and exit code 2 (bad input), as opposed to bugs."""


class UserInputError(Exception):
    """Something the user gave (an option, a file, a name) is wrong; the message says what is valid."""
