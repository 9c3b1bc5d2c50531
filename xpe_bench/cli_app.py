"""What every ``xpe-bench`` command module shares: the typer app, the consoles, the output formats and the
one-line error handling. The command modules (:mod:`xpe_bench.cli`, :mod:`xpe_bench.cli_compare`,
:mod:`xpe_bench.cli_sweep`) import this and never each other's commands, so the CLI has no import cycle.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from xpe_bench.errors import UserInputError

app = typer.Typer(
    name="xpe-bench",
    help="Evaluate cross-lingual transfer methods per language and per Joshi class, under equal budgets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table for people, json for scripts")]


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""A full disk or an exhausted quota: the user's to fix, and a rerun resumes."""


def error_line(message: str) -> None:
    """One line on stderr (soft wrap: the terminal may fold it, rich never breaks it)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def user_errors(func: F) -> F:
    """Turn :class:`UserInputError` (and a full disk) into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserInputError as exc:
            error_line(str(exc))
            raise typer.Exit(2) from exc
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            error_line(
                f"{os.strerror(exc.errno)}{where}; nothing finished was lost (every file is written whole "
                "or not at all): free some space and rerun the same command to resume"
            )
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]


def plugin_registry() -> Any:
    """The plugin registry; one warning line on stderr per failed plugin (what it provides is missing)."""
    from xpe_bench.plugins import load_registry

    registry = load_registry()
    for info in registry.failed:
        err_console.print(
            f"[bold yellow]warning:[/] plugin {escape(info.name)} failed and provides nothing: "
            f"{escape(info.error or '')} (see `xpe-bench plugins`)",
            highlight=False,
            soft_wrap=True,
        )
    return registry


def parse_key_values(values: list[str], option: str = "--option") -> dict[str, str]:
    """``key=value`` items of a repeatable option as a dict (one-line error naming ``option``)."""
    options = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"{option}: {item!r} must look like key=value")
        options[key.strip()] = val.strip()
    return options
