"""Errors the CLI turns into a clear message and exit code 2 (bad input), as opposed to bugs."""

from __future__ import annotations

from pathlib import Path


class UserInputError(Exception):
    """Something the user gave (an option, a file, a name) is wrong; the message says what is valid."""


class RunFailed(Exception):
    """A run that cannot give valid results (e.g. a non-finite loss): recorded as status ``failed``, never
    compared or ranked. The message says what happened and what to change."""


class CorruptRunFile(UserInputError):
    """A file of a run directory (or a compact run file) that cannot be used: unparsable, truncated, of an
    unknown layout, or not this run's. The message starts with the file's path."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
