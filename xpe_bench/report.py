"""Terminal output: rich progress bars, result tables and per-Joshi-class summaries."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from xpe_bench.languages import LanguageTable, joshi_label_order


class LineProgress:
    """A :class:`xpe_bench.methods.ProgressReporter` for logs: one line per ``interval`` seconds (phase,
    done/total, the latest values reported, throughput, ETA), and one at the end of each phase.

    What a job's log shows while it runs (rich bars draw only on a terminal).
    """

    def __init__(self, stream: IO[str], interval: float | None = None) -> None:
        self.stream = stream
        self.interval = (
            float(os.environ.get("XPE_BENCH_PROGRESS_INTERVAL", 30)) if interval is None else interval
        )
        self._description = ""
        self._total = self._done = self._first = 0
        self._started = self._last = 0.0
        self._info: dict[str, Any] = {}

    def note(self, message: str) -> None:
        self._write(message)

    def start(self, description: str, total: int) -> None:
        self._description, self._total, self._done, self._first = description, total, 0, 0
        self._started = self._last = time.monotonic()
        self._info = {}

    def advance(self, steps: int = 1, **info: Any) -> None:
        if self._done == 0 and not info:
            self._first = steps  # a resumed phase starts part-way (training reports it so): rate from here
        self._done += steps
        self._info.update(info)
        if time.monotonic() - self._last >= self.interval:
            self._report()

    def finish(self) -> None:
        if self._description:
            self._report()
        self._description = ""

    def _report(self) -> None:
        self._last = now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rate = (self._done - self._first) / elapsed
        remaining = (self._total - self._done) / rate if rate > 0 else float("inf")
        values = "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self._info.items()
        )
        eta = "-" if remaining == float("inf") else f"{remaining / 60:.1f} min"
        percent = 100 * self._done / self._total if self._total else 100.0
        self._write(
            f"{self._description} {self._done}/{self._total} ({percent:.0f}%)  {values}  "
            f"{rate:.2f}/s  elapsed {elapsed / 60:.1f} min  eta {eta}"
        )

    def _write(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self.stream.write(f"[{stamp}] {line.rstrip()}\n")
        self.stream.flush()


class RichProgress:
    """A :class:`xpe_bench.methods.ProgressReporter` drawing one rich progress bar per phase; when output is
    not a terminal (a log file, a job's output) it prints :class:`LineProgress` lines instead."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self._info: dict[str, Any] = {}
        self._lines = None if console.is_terminal else LineProgress(console.file)

    def start(self, description: str, total: int) -> None:
        if self._lines is not None:
            self._lines.start(description, total)
            return
        self._info = {}
        self._progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, steps: int = 1, **info: Any) -> None:
        if self._lines is not None:
            self._lines.advance(steps, **info)
            return
        if self._progress is None:
            return
        self._info.update(info)
        text = "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in self._info.items()
        )
        self._progress.update(self._task, advance=steps, info=text)

    def finish(self) -> None:
        if self._lines is not None:
            self._lines.finish()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def emit(
    console: Console, rows: Sequence[Mapping[str, Any]], fmt: str, title: str, columns: Sequence[str]
) -> None:
    """Print a listing as a rich table or as a JSON list of objects (for scripts).

    Cells are text, never rich markup: an error such as ``KeyError: ['x']`` must keep its brackets."""
    if fmt == "json":
        console.print_json(json.dumps(list(rows), ensure_ascii=False))
        return
    table = Table(title=escape(title))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(_cell(row.get(column))) for column in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.1f}"


def group_summary(
    metrics: Mapping[str, Mapping[str, float]], key: Callable[[str], str], order: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean accuracy / macro-F1 per group of languages (languages weighted equally)."""
    buckets: dict[str, list[str]] = {}
    for lang in metrics:
        buckets.setdefault(key(lang), []).append(lang)
    rows = []
    for group in [g for g in order if g in buckets] + sorted(set(buckets) - set(order)):
        langs = buckets[group]
        rows.append(
            {
                "group": group,
                "languages": len(langs),
                "accuracy": float(np.mean([metrics[lang]["accuracy"] for lang in langs])),
                "macro_f1": float(np.mean([metrics[lang]["macro_f1"] for lang in langs])),
            }
        )
    return rows


def print_run_result(
    console: Console,
    metrics: Mapping[str, Mapping[str, float]],
    languages: LanguageTable,
    *,
    title: str,
    max_language_rows: int = 60,
) -> None:
    table = Table(title=f"{title}: per language")
    for column in ("language", "name", "Joshi", "CC100", "n", "acc %", "macro-F1 %"):
        table.add_column(column, justify="right" if column in {"n", "acc %", "macro-F1 %"} else "left")
    ordered = sorted(metrics, key=lambda code: -metrics[code]["accuracy"])
    shown = (
        ordered
        if len(ordered) <= max_language_rows
        else ordered[: max_language_rows // 2] + ordered[-max_language_rows // 2 :]
    )
    for i, code in enumerate(shown):
        if len(shown) < len(ordered) and i == max_language_rows // 2:
            table.add_row("…", f"{len(ordered) - len(shown)} more in metrics.json", "", "", "", "", "")
        lang = languages[code]
        m = metrics[code]
        table.add_row(
            code,
            lang.name,
            lang.joshi_label,
            "seen" if lang.cc100 else "unseen",
            str(m["n"]),
            _pct(m["accuracy"]),
            _pct(m["macro_f1"]),
        )
    console.print(table)
    summary = Table(title=f"{title}: per Joshi class (mean over languages)")
    for column in ("Joshi class", "languages", "acc %", "macro-F1 %"):
        summary.add_column(column, justify="left" if column == "Joshi class" else "right")
    for row in group_summary(metrics, languages.group_of, joshi_label_order()):
        summary.add_row(row["group"], str(row["languages"]), _pct(row["accuracy"]), _pct(row["macro_f1"]))
    every = group_summary(metrics, lambda _: "all targets", ["all targets"])[0]
    summary.add_row(
        "all targets", str(every["languages"]), _pct(every["accuracy"]), _pct(every["macro_f1"]), style="bold"
    )
    console.print(summary)
