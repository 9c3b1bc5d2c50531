"""What ``xpe-bench compare`` reports: rows per language or group, the summary lines and the JSON payload.

The command only parses its options and prints; which systems the two arguments name, what each row holds
and how the statistics are worded are decided here, so the Markdown, the table and the JSON of one
comparison always say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpe_bench.errors import UserInputError

if TYPE_CHECKING:
    from xpe_bench.comparison import ComparisonSet, GroupComparison, Pairwise, System
    from xpe_bench.run_level import RunLevelResult

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


def _cells(row: dict[str, Any], by: str) -> list[str]:
    from xpe_bench.leaderboard import percent, with_interval
    from xpe_bench.statistics import Estimate

    def estimate(key: str, signed: bool = False) -> str:
        return with_interval(Estimate(**row[key]), signed=signed)

    if by == "language":
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
    "language": (
        [
            *("language", "Joshi", "n", "A acc % [95% CI]", "B acc % [95% CI]", "Δ pts [95% CI]"),
            *("A F1 %", "B F1 %", "p", "p adj", "MDE pts", "A vs B"),
        ],
        "llrrrrrrrrrl",
    ),
    "joshi": (["Joshi class", "langs", *_GROUP_COLUMNS], "lrrrrrlrrrr"),
    "group": (["group", "langs", *_GROUP_COLUMNS], "lrrrrrlrrrr"),
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


def resolve_pair(comparison: ComparisonSet, run_a: Path, run_b: Path) -> tuple[System, System]:
    """The two systems the command's arguments name: each must hold the seeds of one configuration, and
    the two must differ."""
    from xpe_bench.comparison import expand_run_paths

    systems = []
    for name, path in (("RUN_A", run_a), ("RUN_B", run_b)):
        keys = {str(p) for p in expand_run_paths(path)}
        found = [s for s in comparison.systems if any(str(run.path) in keys for run in s.runs)]
        if len(found) != 1:
            raise UserInputError(
                f"{name} ({path}) holds runs of {len(found)} configurations "
                f"({', '.join(s.label for s in found)}); give the seeds of one configuration"
            )
        systems.append(found[0])
    if systems[0] is systems[1]:
        raise UserInputError(
            f"RUN_A and RUN_B are seeds of the same configuration ({systems[0].label}); "
            "compare two different configurations"
        )
    return systems[0], systems[1]


@dataclass(frozen=True)
class CompareReport:
    """One comparison, ready to print: rows (JSON-ready), their table cells, and the summary lines."""

    title: str
    headers: Sequence[str]
    align: str
    rows: Sequence[dict[str, Any]]
    cells: Sequence[Sequence[str]]
    summary: Sequence[str]
    payload: dict[str, Any]
    """The whole comparison as JSON."""


def compare_report(
    run_a: Path,
    run_b: Path,
    *,
    test: str = "permutation",
    correction: str = "holm",
    by: str = "language",
    mid_p: bool = False,
    paired_seeds: bool = False,
    force: bool = False,
) -> CompareReport:
    """Compare the systems ``run_a`` and ``run_b`` name (runs, compact files or folders of seeds)."""
    from xpe_bench.comparison import compare_pair, prepare

    comparison = prepare([run_a, run_b], force=force)
    a, b = resolve_pair(comparison, run_a, run_b)
    pairwise = compare_pair(
        comparison, a, b, test=test, correction=correction, mid_p=mid_p, paired_seeds=paired_seeds
    )
    overall = pairwise.group("all compared", comparison.items)
    assert overall is not None  # prepare() guarantees at least one compared language
    if by == "language":
        rows = _language_rows(comparison, pairwise)
    else:
        groups = [pairwise.group(name, codes) for name, codes in comparison.groups(by)]
        rows = [_group_row(group) for group in groups if group is not None]
    payload = {
        "a": pairwise.a.describe(),
        "b": pairwise.b.describe(),
        "test": pairwise.test,
        "mid_p": mid_p,
        "paired_seeds": paired_seeds,
        "correction": pairwise.correction,
        "alpha": pairwise.alpha,
        "by": by,
        "coverage": comparison.coverage.to_dict(),
        "rows": rows,
        "overall": _group_row(overall),
        "warnings": list(comparison.warnings),
    }
    headers, align = _HEADERS[by]
    return CompareReport(
        title=f"A = {pairwise.a.label} vs B = {pairwise.b.label}",
        headers=headers,
        align=align,
        rows=rows,
        cells=[_cells(row, by) for row in rows],
        summary=_summary(comparison, pairwise, overall, mid_p),
        payload=payload,
    )
