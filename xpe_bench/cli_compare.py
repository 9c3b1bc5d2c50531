"""The ``compare`` and ``leaderboard`` commands (registered on the ``xpe-bench`` app when imported).

Statistics are imported inside the commands, so listing commands stay fast.
"""

from __future__ import annotations

import json
import math
import shlex
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from xpe_bench.cli_app import app, console, user_errors

if TYPE_CHECKING:
    from xpe_bench.comparison import ComparisonSet, GroupComparison, Pairwise
    from xpe_bench.run_level import RunLevelResult


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


_TESTS = {
    "permutation": "exact sign-flip permutation test on seed-averaged item correctness",
    "bootstrap": "paired bootstrap test of seed-averaged item correctness",
    "mcnemar": "exact McNemar test",
}
_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}


def _number(value: float) -> float | None:
    """JSON has no NaN: undefined values (e.g. the MDE without discordant items) become null."""
    return None if math.isnan(value) else value


def _language_rows(comparison: ComparisonSet, pairwise: Pairwise) -> list[dict[str, Any]]:
    scores_a, scores_b = comparison.scores(pairwise.a), comparison.scores(pairwise.b)
    rows = []
    for lang, outcome in pairwise.languages.items():
        result = outcome.result
        rows.append(
            {
                "language": lang,
                "joshi": comparison.table[lang].joshi_label,
                "n": result.n,
                "accuracy_a": scores_a[lang].accuracy.to_dict(),
                "accuracy_b": scores_b[lang].accuracy.to_dict(),
                "macro_f1_a": scores_a[lang].macro_f1.to_dict(),
                "macro_f1_b": scores_b[lang].macro_f1.to_dict(),
                "seed_accuracy_a": list(scores_a[lang].seed_accuracy),
                "seed_accuracy_b": list(scores_b[lang].seed_accuracy),
                "sd_a": _number(scores_a[lang].accuracy_sd),
                "sd_b": _number(scores_b[lang].accuracy_sd),
                "difference": result.difference.to_dict(),
                "p_value": result.p_value,
                "adjusted_p": outcome.adjusted_p,
                "verdict": outcome.verdict,
                "a_only": result.a_only,
                "b_only": result.b_only,
                "discordance": result.discordance,
                "mde": _number(result.mde),
            }
        )
    return rows


def _run_level_row(result: RunLevelResult | None, missing: str) -> dict[str, Any]:
    if result is None:
        return {"available": False, "reason": missing}
    components = result.components
    return {
        "available": True,
        "difference": result.difference.to_dict(),
        "standard_error": result.standard_error,
        "df": _number(result.df),
        "p_value": result.p_value,
        "verdict": result.verdict(),
        "paired_seeds": result.paired,
        "run_means_a": list(result.run_means_a),
        "run_means_b": list(result.run_means_b),
        "variance_components": {
            "seeds_a": components.seeds_a,
            "seeds_b": components.seeds_b,
            "languages": components.languages,
        },
        "t_test_p": result.t_test_p,
        "seeds_needed": result.seeds_needed(),
    }


def _group_row(group: GroupComparison) -> dict[str, Any]:
    return {
        "group": group.name,
        "size": group.size,
        "compared": group.compared,
        "accuracy_a": group.accuracy_a,
        "accuracy_b": group.accuracy_b,
        "difference": group.difference.to_dict(),
        **group.record.to_dict(),
        "wilcoxon": {
            "statistic": group.wilcoxon.statistic,
            "p_value": group.wilcoxon.p_value,
            "n": group.wilcoxon.n,
        },
        "run_level": _run_level_row(group.run_level, group.run_level_missing),
    }


def _run_level_cells(row: dict[str, Any]) -> list[str]:
    from xpe_bench.leaderboard import seeds_for_power, with_interval
    from xpe_bench.statistics import Estimate

    run_level = row["run_level"]
    if not run_level["available"]:
        return ["–", "–", run_level["reason"], "–"]
    difference = Estimate(**run_level["difference"])
    return [
        with_interval(difference, signed=True),
        f"{run_level['p_value']:.3g}",
        run_level["verdict"],
        seeds_for_power(run_level["seeds_needed"], difference.value),
    ]


def _cells(row: dict[str, Any], by: CompareBy) -> list[str]:
    from xpe_bench.leaderboard import percent, with_interval
    from xpe_bench.statistics import Estimate

    def estimate(key: str, signed: bool = False) -> str:
        return with_interval(Estimate(**row[key]), signed=signed)

    if by == CompareBy.language:
        mde = row["mde"]
        return [
            row["language"],
            row["joshi"],
            str(row["n"]),
            estimate("accuracy_a"),
            estimate("accuracy_b"),
            estimate("difference", signed=True),
            percent(row["macro_f1_a"]["value"]),
            percent(row["macro_f1_b"]["value"]),
            f"{row['p_value']:.3g}",
            f"{row['adjusted_p']:.3g}",
            "–" if mde is None else f"{100 * mde:.1f}",
            row["verdict"],
        ]
    return [
        row["group"],
        f"{row['compared']}/{row['size']}",
        percent(row["accuracy_a"]),
        percent(row["accuracy_b"]),
        *_run_level_cells(row),
        estimate("difference", signed=True),
        f"{row['wins']}/{row['ties']}/{row['losses']}",
        f"{row['wilcoxon']['p_value']:.3g}",
    ]


_GROUP_COLUMNS = [
    *("A acc %", "B acc %", "Δ pts, run level [95% CI]", "run-level p", "verdict (run level)"),
    *("seeds for 80% power", "seeds fixed: Δ pts [95% CI]", "seeds fixed: W/T/L", "seeds fixed: Wilcoxon p"),
]


_HEADERS = {
    CompareBy.language: (
        [
            *("language", "Joshi", "n", "A acc % [95% CI]", "B acc % [95% CI]", "Δ pts [95% CI]"),
            *("A F1 %", "B F1 %", "p", "p adj", "MDE pts", "A vs B"),
        ],
        "llrrrrrrrrrl",
    ),
    CompareBy.joshi: (["Joshi class", "langs", *_GROUP_COLUMNS], "lrrrrrlrrrr"),
    CompareBy.group: (["group", "langs", *_GROUP_COLUMNS], "lrrrrrlrrrr"),
}


def _summary(
    comparison: ComparisonSet, pairwise: Pairwise, overall: GroupComparison, mid_p: bool
) -> list[str]:
    import numpy as np

    from xpe_bench.leaderboard import percent, with_interval
    from xpe_bench.statistics import ALPHA, POWER, RESAMPLES

    test = _TESTS[pairwise.test] + (" (mid-p)" if mid_p and pairwise.test == "mcnemar" else "")
    mdes = [o.result.mde for o in pairwise.languages.values() if not math.isnan(o.result.mde)]
    lines = [
        *(
            f"{name} = {system.label}: seeds {', '.join(map(str, system.seeds))} "
            f"({', '.join(str(run.path) for run in system.runs)})"
            for name, system in (("A", pairwise.a), ("B", pairwise.b))
        ),
        f"coverage: {comparison.coverage.summary()}",
        *(f"  {line}" for line in comparison.coverage.details()),
        f"test: {test}; {_CORRECTIONS[pairwise.correction]} correction over {len(pairwise.languages)} "
        f"languages; alpha {pairwise.alpha}; Δ = A − B with a 95% paired bootstrap CI "
        f"({RESAMPLES:,} resamples); seeds fixed",
        f"all compared languages, seeds fixed: A {percent(overall.accuracy_a)}%, "
        f"B {percent(overall.accuracy_b)}%, Δ {with_interval(overall.difference, signed=True)} pts "
        "(two-stage bootstrap over languages and items); "
        f"win/tie/loss {overall.record}; Wilcoxon signed-rank p = {overall.wilcoxon.p_value:.3g} "
        f"(n = {overall.wilcoxon.n} languages with a difference)",
    ]
    lines.append(_run_level_summary(overall))
    if mdes:
        lines.append(
            f"minimum detectable effect: median {100 * float(np.median(mdes)):.1f} pts over "
            f"languages ({POWER:.0%} power, alpha {ALPHA}, observed discordance): smaller differences are "
            "usually ties"
        )
    lines += [f"warning: {warning}" for warning in comparison.warnings]
    return lines


def _run_level_summary(overall: GroupComparison) -> str:
    """One line: the run-level verdict over all compared languages, its cross-check and the power analysis."""
    from xpe_bench.leaderboard import seeds_for_power, with_interval
    from xpe_bench.statistics import ALPHA, POWER

    result = overall.run_level
    if result is None:
        return f"run level (runs as the unit): {overall.run_level_missing}; only the seeds-fixed tests apply"
    pairing = "seeds paired" if result.paired else "seeds independent"
    return (
        f"run level (runs as the unit, {pairing}): Δ {with_interval(result.difference, signed=True)} pts, "
        f"p = {result.p_value:.3g} (hierarchical bootstrap over runs and languages, t with "
        f"{result.df:.1f} df): {result.verdict(ALPHA)}; "
        f"{'paired' if result.paired else 'Welch'} t-test on the runs' means p = {result.t_test_p:.3g}; "
        f"seeds per system for {POWER:.0%} power at this Δ: "
        f"{seeds_for_power(result.seeds_needed(), result.difference.value)}"
    )


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
    from xpe_bench.comparison import compare_pair, expand_run_paths, prepare
    from xpe_bench.errors import UserInputError
    from xpe_bench.leaderboard import markdown_table

    comparison = prepare([run_a, run_b], force=force)
    systems = {}
    for name, path in (("RUN_A", run_a), ("RUN_B", run_b)):
        keys = {str(p) for p in expand_run_paths(path)}
        found = [s for s in comparison.systems if any(str(run.path) in keys for run in s.runs)]
        if len(found) != 1:
            raise UserInputError(
                f"{name} ({path}) holds runs of {len(found)} configurations "
                f"({', '.join(s.label for s in found)}); give the seeds of one configuration"
            )
        systems[name] = found[0]
    if systems["RUN_A"] is systems["RUN_B"]:
        raise UserInputError(
            f"RUN_A and RUN_B are seeds of the same configuration ({systems['RUN_A'].label}); "
            "compare two different configurations"
        )
    pairwise = compare_pair(
        comparison,
        systems["RUN_A"],
        systems["RUN_B"],
        test=test.value,
        correction=correction.value,
        mid_p=mid_p,
        paired_seeds=paired_seeds,
    )
    overall = pairwise.group("all compared", comparison.items)
    assert overall is not None  # prepare() guarantees at least one compared language
    if by == CompareBy.language:
        rows = _language_rows(comparison, pairwise)
    else:
        groups = [pairwise.group(name, codes) for name, codes in comparison.groups(by.value)]
        rows = [_group_row(group) for group in groups if group is not None]

    if fmt == CompareFormat.json:
        payload = {
            "a": pairwise.a.describe(),
            "b": pairwise.b.describe(),
            "test": pairwise.test,
            "mid_p": mid_p,
            "paired_seeds": paired_seeds,
            "correction": pairwise.correction,
            "alpha": pairwise.alpha,
            "by": by.value,
            "coverage": comparison.coverage.to_dict(),
            "rows": rows,
            "overall": _group_row(overall),
            "warnings": list(comparison.warnings),
        }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    headers, align = _HEADERS[by]
    summary = _summary(comparison, pairwise, overall, mid_p)
    if fmt == CompareFormat.md:
        body = markdown_table(headers, [_cells(row, by) for row in rows], align)
        typer.echo("\n".join([body, "", *(f"- {line.strip()}" for line in summary)]))
        return
    table = Table(title=f"A = {escape(pairwise.a.label)} vs B = {escape(pairwise.b.label)}")
    for header, side in zip(headers, align, strict=True):
        table.add_column(header, justify="right" if side == "r" else "left")
    for row in rows:
        table.add_row(*(escape(cell) for cell in _cells(row, by)))
    console.print(table)
    for line in summary:
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
