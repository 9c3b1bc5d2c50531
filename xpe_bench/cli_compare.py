"""The ``compare`` and ``leaderboard`` commands (registered on the ``xpe-bench`` app when imported).

Statistics are imported inside the commands, so listing commands stay fast.
"""

from __future__ import annotations

import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from xpe_bench.cli_app import app, console, user_errors


class PairedTest(StrEnum):
    permutation = "permutation"
    bootstrap = "bootstrap"
    mcnemar = "mcnemar"


class CorrectionChoice(StrEnum):
    holm = "holm"
    bh = "bh"
    none = "none"


class CompareBy(StrEnum):
    language = "language"
    joshi = "joshi"
    group = "group"


class LeaderboardBy(StrEnum):
    joshi = "joshi"
    group = "group"


class CompareFormat(StrEnum):
    table = "table"
    md = "md"
    json = "json"


@app.command()
@user_errors
def compare(
    run_a: Annotated[Path, typer.Argument(help="run directory, compact .json.gz, or folder of its seeds")],
    run_b: Annotated[Path, typer.Argument(help="likewise, for the second system")],
    test: Annotated[PairedTest, typer.Option(help="per-language paired test")] = PairedTest.permutation,
    correction: Annotated[
        CorrectionChoice, typer.Option(help="multiple-testing correction over the languages")
    ] = CorrectionChoice.holm,
    by: Annotated[CompareBy, typer.Option(help="rows: languages, Joshi classes or named groups")] = (
        CompareBy.language
    ),
    mid_p: Annotated[bool, typer.Option("--mid-p", help="mcnemar: the mid-p variant")] = False,
    paired_seeds: Annotated[
        bool,
        typer.Option(
            "--paired-seeds",
            help="run-level test: pair seed k of A with seed k of B (both must have run the same seeds)",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="compare despite different budgets, tasks or label sets")
    ] = False,
    fmt: Annotated[CompareFormat, typer.Option("--format", help="table, md (Markdown) or json")] = (
        CompareFormat.table
    ),
) -> None:
    """Compare two systems language by language with paired tests (A − B).

    A folder of runs of one configuration counts as one system with several seeds: its items are then
    averaged over seeds for the per-language (seeds fixed) tests, and its runs are the unit of the
    run-level test over each group. Only languages and items every run predicted are compared.
    """
    from xpe_bench.compare_report import compare_report
    from xpe_bench.leaderboard import markdown_table

    report = compare_report(
        run_a,
        run_b,
        test=test.value,
        correction=correction.value,
        by=by.value,
        mid_p=mid_p,
        paired_seeds=paired_seeds,
        force=force,
    )
    if fmt == CompareFormat.json:
        typer.echo(json.dumps(report.payload, indent=2, ensure_ascii=False))
        return
    if fmt == CompareFormat.md:
        body = markdown_table(report.headers, report.cells, report.align)
        typer.echo("\n".join([body, "", *(f"- {line.strip()}" for line in report.summary)]))
        return
    table = Table(title=escape(report.title))
    for header, side in zip(report.headers, report.align, strict=True):
        table.add_column(header, justify="right" if side == "r" else "left")
    for cells in report.cells:
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)
    for line in report.summary:
        console.print(escape(line), style="bold yellow" if line.startswith("warning") else None)


@app.command()
@user_errors
def leaderboard(
    runs: Annotated[
        list[Path], typer.Argument(help="run directories, compact .json.gz files, or folders of runs")
    ],
    out: Annotated[Path, typer.Option("--out", help="the Markdown file to write (the plot goes next to it)")],
    by: Annotated[
        list[LeaderboardBy] | None,
        typer.Option("--by", help="tables per Joshi class and/or named group (repeatable; default both)"),
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="method (or system label) the W/T/L columns compare against")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            help="named group to tabulate with --by group (repeatable; default: low-performing, unseen, "
            "seen-wo-joshi5, all-wo-joshi5, all, as far as the task defines them)",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="compare despite different budgets, tasks or label sets")
    ] = False,
    published: Annotated[
        str | None,
        typer.Option(
            "--published",
            help="published per-language table (a CSV in the reference folder, or a path) to set the replay "
            "systems beside, e.g. sib200-paper-gpt-accuracy.csv",
        ),
    ] = None,
) -> None:
    """Write a Markdown leaderboard (one table per Joshi class and per group) and its PNG plot."""
    from xpe_bench.leaderboard import write_leaderboard

    chosen = [value.value for value in (by or list(LeaderboardBy))]
    command = shlex.join(
        [
            "xpe-bench",
            "leaderboard",
            *map(str, runs),
            *(part for value in chosen for part in ("--by", value)),
            *(["--reference", reference] if reference is not None else []),
            *(part for name in group or [] for part in ("--group", name)),
            *(["--published", published] if published is not None else []),
            "--out",
            str(out),
            *(["--force"] if force else []),
        ]
    )
    image, board = write_leaderboard(
        runs,
        out,
        by=chosen,
        reference=reference,
        groups=group or [],
        force=force,
        command=command,
        published=published,
    )
    comparison = board.comparison
    console.print(
        f"wrote [bold]{escape(str(out))}[/] and [bold]{escape(str(image))}[/]: {len(comparison.systems)} "
        f"systems, {escape(comparison.coverage.summary())}"
    )
    for warning in comparison.warnings:
        console.print(f"warning: {escape(warning)}", style="bold yellow")
