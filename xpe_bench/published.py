"""Published per-language results, set beside a board's own numbers (the SIB-200 paper's GPT table).

A published table is a CSV file: comment lines starting with ``#`` (where the numbers come from and how their
averages were formed; the board quotes them), a header ``code,<column>,...`` and one row per language with
values in percent. A name without a folder is looked up in the reference folder
(:func:`xpe_bench.paths.resolve_reference_root`: ``$XPE_BENCH_REFERENCE``, else ``reference`` beside the data
root).

A column stands for the replay systems whose ``source`` option names it, compared without case and
punctuation: column ``gpt4`` is ``replay --option source=gpt-4`` (the ``replay-gpt-4`` preset), ``gpt35`` is
``gpt-3.5``. Replays of a folder of other predictions (``predictions_dir``) match no column.

Two averages of a published column are easy to confuse, so both are provided: the mean over languages
(:func:`language_mean`, how the board averages) and the mean over language families of each family's mean
(:func:`family_mean`), which is how the SIB-200 paper formed the "Average" row of its Table 4.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpe_bench.errors import UserInputError
from xpe_bench.paths import resolve_reference_root


@dataclass(frozen=True)
class PublishedTable:
    path: Path
    notes: tuple[str, ...]
    """The file's comment lines, without the ``#``."""
    columns: tuple[str, ...]
    values: Mapping[str, Mapping[str, float]]
    """Column -> language code -> accuracy as a fraction (the file's percent / 100)."""

    def column_for(self, options: Mapping[str, Any]) -> str | None:
        """The column a replay system with these method options reproduces (module docstring), if any."""
        source = options.get("source")
        if not isinstance(source, str) or options.get("predictions_dir") or not source:
            return None
        return next((column for column in self.columns if _plain(column) == _plain(source)), None)


def _plain(name: str) -> str:
    return re.sub(r"[\W_]", "", name.casefold())


def find_published(name: str, reference_root: Path | None = None) -> Path:
    """The path of a published table: ``name`` itself when it has a folder part, else in the reference
    folder."""
    given = Path(name).expanduser()
    if given.parent != Path("."):
        if not given.is_file():
            raise UserInputError(f"--published: no such file {str(given)!r}")
        return given
    root = reference_root or resolve_reference_root()
    if root is None:
        raise UserInputError(
            f"--published {name}: no reference folder to find it in; set $XPE_BENCH_REFERENCE or give a path"
        )
    path = root / name
    if not path.is_file():
        available = ", ".join(sorted(p.name for p in root.glob("*.csv"))) or "none"
        raise UserInputError(f"--published: no {name!r} in {root}; CSV files there: {available}")
    return path


def read_published(path: Path) -> PublishedTable:
    """Read a published table (module docstring); a malformed file is a one-line :class:`UserInputError`."""
    with path.open(encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines()
    notes = tuple(line.lstrip("#").strip() for line in lines if line.startswith("#"))
    reader = csv.reader(line for line in lines if line.strip() and not line.startswith("#"))
    header = next(reader, [])
    if len(header) < 2 or header[0] != "code":
        raise UserInputError(f"{path}: header {header}: expected code and at least one value column")
    columns = tuple(header[1:])
    values: dict[str, dict[str, float]] = {column: {} for column in columns}
    for index, row in enumerate(reader, start=1):
        where = f"{path}, data row {index}"
        if len(row) != len(header):
            raise UserInputError(f"{where}: {len(row)} fields, the header has {len(header)}")
        code = row[0]
        if code in values[columns[0]]:
            raise UserInputError(f"{where}: language {code!r} appears twice")
        for column, text in zip(columns, row[1:], strict=True):
            try:
                value = float(text)
            except ValueError:
                raise UserInputError(f"{where}: {column} = {text!r} is not a number") from None
            if not 0 <= value <= 100:
                raise UserInputError(f"{where}: {column} = {value} is not a percentage (0-100)")
            values[column][code] = value / 100
    if not values[columns[0]]:
        raise UserInputError(f"{path}: no rows")
    return PublishedTable(path=path, notes=notes, columns=columns, values=values)


def language_mean(values: Mapping[str, float], codes: Iterable[str]) -> float:
    """Mean over ``codes`` (NaN for none)."""
    chosen = [values[code] for code in codes]
    return sum(chosen) / len(chosen) if chosen else math.nan


def family_mean(values: Mapping[str, float], families: Mapping[str, str]) -> tuple[float, int]:
    """Mean over language families of each family's mean over its languages in ``values``, and the number
    of families: every family weighs the same, whatever its size (the SIB-200 paper's Table 4 average)."""
    members: dict[str, list[float]] = {}
    for code, value in values.items():
        if code not in families:
            raise UserInputError(f"language {code!r} has no family in the language table")
        members.setdefault(families[code], []).append(value)
    means = [sum(group) / len(group) for group in members.values()]
    return (sum(means) / len(means) if means else math.nan), len(means)
