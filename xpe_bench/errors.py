"""Errors the CLI turns into a clear message and exit code 2 (bad input), as opposed to bugs."""


class UserInputError(Exception):
    """Something the user gave (an option, a file, a name) is wrong; the message says what is valid."""


class RunFailed(Exception):
    """A run that cannot give valid results (e.g. a non-finite loss): recorded as status ``failed``, never
    compared or ranked. The message says what happened and what to change."""
