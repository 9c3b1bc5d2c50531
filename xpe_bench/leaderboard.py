"""Markdown leaderboards and their plot: one table per Joshi class and per named language group.

A leaderboard is generated, never edited: its header holds the exact command that regenerates it, and the
output is deterministic — bootstrap and permutation draws use fixed seeds, systems and languages are iterated
in sorted order, numbers are formatted with fixed precision, nothing records a time or a host — so
regenerating from the same runs gives the same bytes (the PNG too: it is drawn with matplotlib's default
style and written without metadata).

Reading a row: accuracy is the mean over the compared languages of each language's seed-mean accuracy,
with a two-stage percentile bootstrap interval (languages, then test items); ``sd over seeds`` is the
standard deviation over seeds of that mean; Δ is the mean per-language difference to the reference. The
headline verdict on Δ treats the *runs* as the unit (:mod:`xpe_bench.run_level`: its interval, p-value,
verdict and the seeds a run-level test would need for 80% power); a system or reference with a single run
gets none. The item-level statistics stay beside it, labelled "seeds fixed": Δ's two-stage interval, the
Wilcoxon p (does the system tend to be better across the section's languages) and W/T/L, the languages where
the system is significantly better than / not distinguishable from / significantly worse than the reference
(exact sign-flip test on seed-averaged item correctness, Holm-corrected over all compared languages). See
docs/statistics.md.

Every board also says whether its trained runs finished optimising (:mod:`xpe_bench.convergence`): a
Convergence table per system, the learning curves beside the board, and a banner on the board and on every
section that ranks a run which did not converge, since the ranking is then about optimisation, not transfer.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpe_bench.comparison import (
    ComparisonSet,
    GroupBy,
    GroupComparison,
    Pairwise,
    System,
    compare_pair,
    prepare,
)
from xpe_bench.convergence import describe_rule
from xpe_bench.errors import UserInputError
from xpe_bench.plugins import Registry
from xpe_bench.published import PublishedTable, family_mean, find_published, language_mean, read_published
from xpe_bench.run_level import MAX_SEEDS
from xpe_bench.statistics import (
    ALPHA,
    CONFIDENCE,
    POWER,
    RESAMPLES,
    SEED,
    Estimate,
    seed_spread,
    two_stage_interval,
)
from xpe_bench.store import atomic_write_bytes

BY_CHOICES: tuple[GroupBy, ...] = ("joshi", "group")

XLMR_FIELDS: Mapping[str, str] = {
    "cc100": "membership in CC100, XLM-R's pretraining data",
    "low_performing": "accuracy below 60% under full fine-tuning of XLM-R-large in the SIB-200 paper",
}
"""Language metadata fields that come from XLM-R, whatever backbone a board is built on."""
XLMR_LARGE = "xlm-roberta-large"


# formatting (shared with the compare command) ---------------------------------------------------------------
def percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def points(value: float) -> str:
    """A difference in percentage points with its sign (``+2.5``, ``-1.0``, ``0.0``)."""
    if math.isnan(value):
        return "–"
    text = f"{100 * value:+.1f}"
    return "0.0" if text in {"+0.0", "-0.0"} else text


def with_interval(estimate: Estimate, signed: bool = False) -> str:
    show = points if signed else percent
    return f"{show(estimate.value)} [{show(estimate.low)}, {show(estimate.high)}]"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    """A GitHub Markdown table; ``align`` holds ``l`` or ``r`` per column."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# building ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One system's row in one section."""

    system: System
    accuracy: Estimate
    macro_f1: float
    seed_sd: float
    covers: int
    """Languages of the section this system predicted (with every seed), compared or not."""
    versus: GroupComparison | None
    """Against the reference over the section's compared languages (mean difference with its run-level and
    its two-stage interval, Wilcoxon signed-rank, win/tie/loss); None for the reference itself or without
    one."""


@dataclass(frozen=True)
class Section:
    name: str
    description: str
    languages: tuple[str, ...]
    """The section's languages in the task."""
    compared: tuple[str, ...]
    entries: tuple[Entry, ...]
    """Best accuracy first (ties by label); empty when no compared language is in the section."""


@dataclass(frozen=True)
class Leaderboard:
    comparison: ComparisonSet
    reference: System | None
    sections: tuple[Section, ...]
    joshi: tuple[Section, ...]
    """The Joshi-class sections, for the plot (computed whatever ``by`` asks for)."""


def _section(
    comparison: ComparisonSet,
    name: str,
    codes: Sequence[str],
    versus: Mapping[str, Pairwise],
) -> Section:
    compared = comparison.compared_in(codes)
    entries = []
    if compared:
        for system in comparison.systems:
            scores = comparison.scores(system)
            chosen = [scores[lang] for lang in compared]
            pairwise = versus.get(system.label)
            entries.append(
                Entry(
                    system=system,
                    accuracy=two_stage_interval(
                        np.array([s.accuracy.value for s in chosen]), np.stack([s.replicates for s in chosen])
                    ),
                    macro_f1=float(np.mean([s.macro_f1.value for s in chosen])),
                    seed_sd=seed_spread(np.array([s.seed_accuracy for s in chosen]).T)[1],
                    covers=len(system.languages & set(codes)),
                    versus=None if pairwise is None else pairwise.group(name, compared),
                )
            )
    entries.sort(key=lambda entry: (-entry.accuracy.value, entry.system.label))
    return Section(
        name=name,
        description=comparison.table.descriptions.get(name, ""),
        languages=tuple(codes),
        compared=tuple(compared),
        entries=tuple(entries),
    )


def build(
    comparison: ComparisonSet,
    *,
    by: Sequence[GroupBy],
    reference: str | None,
    groups: Sequence[str] = (),
) -> Leaderboard:
    """Compute every section: ``by`` picks Joshi classes, named groups (``groups``, default the standard
    ones the task defines), or both, in that order."""
    unknown = [value for value in by if value not in BY_CHOICES]
    if unknown or not by:
        raise UserInputError(f"--by: {', '.join(unknown) or 'nothing'}; valid: {', '.join(BY_CHOICES)}")
    chosen = comparison.system(reference) if reference is not None else None
    versus = {
        system.label: compare_pair(comparison, system, chosen, test="permutation", correction="holm")
        for system in comparison.systems
        if chosen is not None and system is not chosen
    }
    joshi = tuple(_section(comparison, name, codes, versus) for name, codes in comparison.groups("joshi"))
    sections: list[Section] = []
    for value in dict.fromkeys(by):
        if value == "joshi":
            sections.extend(joshi)
        else:
            sections.extend(
                _section(comparison, name, codes, versus) for name, codes in comparison.groups(value, groups)
            )
    return Leaderboard(comparison=comparison, reference=chosen, sections=tuple(sections), joshi=joshi)


# rendering --------------------------------------------------------------------------------------------------
def _per_system(values: Mapping[str, str]) -> str:
    """One value when every system agrees, else ``label: value`` for each."""
    distinct = set(values.values())
    if len(distinct) == 1:
        return distinct.pop()
    return "; ".join(f"{label}: {value}" for label, value in values.items())


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _header(board: Leaderboard, command: str, image: str) -> list[str]:
    comparison = board.comparison
    systems = comparison.systems
    first = {system.label: system.runs[0] for system in systems}
    rows = [
        (
            "task",
            _per_system({label: f"{run.task} ({len(run.labels)} labels)" for label, run in first.items()}),
        ),
        (
            "backbone",
            _per_system(
                {
                    label: f"{run.backbone} (weights {run.backbone_sha256[:12]})"
                    for label, run in first.items()
                }
            ),
        ),
        ("budget", _per_system({label: run.budget for label, run in first.items()})),
        ("regime", _per_system({label: run.regime for label, run in first.items()})),
        ("sources", _per_system({label: ", ".join(run.sources) or "–" for label, run in first.items()})),
        ("seeds", "; ".join(f"{s.label}: {', '.join(map(str, s.seeds))}" for s in systems)),
        ("languages", comparison.coverage.summary()),
        (
            "accuracy intervals",
            f"{100 * CONFIDENCE:.0f}% two-stage percentile bootstrap over languages and test items, seeds "
            f"fixed ({RESAMPLES:,} resamples, seed {SEED})",
        ),
        *_inference_rows(board),
    ]
    lines = [
        f"# Leaderboard: {_per_system({label: run.task for label, run in first.items()})}",
        "",
        *_convergence_banner(systems, board_wide=True),
        "Generated by xpe-bench; do not edit by hand. Regenerate with:",
        "",
        "```sh",
        command,
        "```",
        "",
        markdown_table(["", ""], [(key, value) for key, value in rows], "ll"),
        "",
    ]
    if comparison.coverage.details():
        lines += [*(f"- {line}" for line in comparison.coverage.details()), ""]
    for warning in comparison.warnings:
        lines += [f"> **Warning:** {warning}", ""]
    lines += [f"![accuracy per Joshi class]({image})", ""]
    lines.append(
        "Accuracy: mean over the compared languages of each language's seed-mean accuracy. "
        "Δ: mean per-language difference to the reference, in points. **Run level** (the headline): Δ's "
        "interval, p and verdict with the runs as the unit, so a re-run with other seeds is part of the "
        "uncertainty; seeds for 80% power: runs per system a run-level test would need to detect this Δ "
        "given the observed spread between runs. **Seeds fixed** (secondary): the same Δ with an interval "
        "over languages and test items only; Wilcoxon p: two-sided signed-rank test of the per-language "
        "differences (where a small consistent gain shows); W/T/L: languages where the system is "
        "significantly better / not distinguishable / significantly worse than the reference; with about "
        "200 test items a tie can hide a difference of several points. Seeds-fixed tests treat these runs "
        "as the truth and call seed luck a difference (see docs/statistics.md)."
    )
    return lines


def _inference_rows(board: Leaderboard) -> list[tuple[str, str]]:
    """The header rows that say which inference the Δ, verdict and W/T/L columns use."""
    reference = board.reference
    if reference is None:
        return [("verdicts", "no reference given (--reference)")]
    return [
        (
            "run level",
            f"against {reference.label}, runs as the unit: hierarchical bootstrap over runs and languages "
            f"({RESAMPLES:,} resamples, seed {SEED}) for the standard error of Δ, Student t with "
            f"Satterthwaite degrees of freedom for the {100 * CONFIDENCE:.0f}% interval and the two-sided p; "
            f"verdict at alpha {ALPHA}, not corrected across sections or systems; seeds for "
            f"{POWER:.0%} power per system at the observed Δ and spread; a system with 1 run has no "
            "run-level test",
        ),
        (
            "seeds fixed",
            f"against {reference.label}: Δ interval as the accuracy intervals; W/T/L by the exact "
            f"sign-flip test per language on seed-averaged item correctness, Holm-corrected over the "
            f"{len(board.comparison.items)} compared languages, alpha {ALPHA}; Wilcoxon signed-rank across "
            "the section's languages",
        ),
    ]


def _coverage_note(comparison: ComparisonSet, section: Section) -> str:
    """How many of the section's languages are compared; which were left out as only some runs have them."""
    if not section.languages:
        return "The task has no language in this class."
    partial = [
        code
        for code in section.languages
        if code in comparison.coverage.predicted and code not in section.compared
    ]
    absent = len(section.languages) - len(section.compared) - len(partial)
    note = f"Compared on {len(section.compared)} of {len(section.languages)} languages"
    if partial:
        shown = ", ".join(partial[:12]) + (" …" if len(partial) > 12 else "")
        note += f"; left out because only some runs predicted them: {shown}"
    if absent:
        note += f"; {absent} predicted by no run"
    return note + "."


def _xlmr_note(board: Leaderboard, section: Section) -> list[str]:
    """For a group defined by XLM-R (it filters on :data:`XLMR_FIELDS`) on a board of another backbone: say
    so (the group is not this backbone's own low performers or unseen languages)."""
    fields = sorted(board.comparison.table.filtered_on.get(section.name, frozenset()) & set(XLMR_FIELDS))
    backbones = sorted({run.backbone for system in board.comparison.systems for run in system.runs})
    if not fields or all(name.casefold().endswith(XLMR_LARGE) for name in backbones):
        return []
    return [
        f"Note: this group is defined by XLM-R ({'; '.join(XLMR_FIELDS[field] for field in fields)}), not by "
        f"this board's backbone ({', '.join(backbones)}); the languages this backbone finds hard or did not "
        "see in pretraining may differ.",
        "",
    ]


def _section_lines(board: Leaderboard, section: Section) -> list[str]:
    title = f"## {section.name}" + (f" — {section.description}" if section.description else "")
    lines = [title, ""]
    lines += [_coverage_note(board.comparison, section), ""]
    lines += _xlmr_note(board, section)
    if not section.entries:
        return lines
    lines += _convergence_banner([entry.system for entry in section.entries], board_wide=False)
    reference = board.reference
    headers = [
        "#",
        "system",
        "accuracy % [95% CI]",
        "macro-F1 %",
        "sd over seeds",
        "seeds",
        "covers",
        *_versus_headers(reference),
        "trainable params",
        "train s",
    ]
    rows = []
    for rank, entry in enumerate(section.entries, start=1):
        system = entry.system
        versus = entry.versus
        if versus is not None:
            compared = [*_run_level_cells(versus), *_seeds_fixed_cells(versus)]
        else:
            compared = ["reference" if system is reference else "–"] * len(_versus_headers(reference))
        rows.append(
            [
                str(rank),
                system.label,
                with_interval(entry.accuracy),
                percent(entry.macro_f1),
                "–" if math.isnan(entry.seed_sd) else f"{100 * entry.seed_sd:.1f}",
                str(len(system.seeds)),
                f"{entry.covers}/{len(section.languages)}",
                *compared,
                "–" if system.trainable is None else f"{system.trainable:,}",
                _seconds(system.train_seconds),
            ]
        )
    return [*lines, markdown_table(headers, rows, "rlrrrrrrrlrrrlrr"), ""]


def _versus_headers(reference: System | None) -> list[str]:
    against = f" vs {reference.label}" if reference else ""
    return [
        f"Δ{against}, run level [95% CI]",
        "run-level p",
        f"verdict{against} (run level)",
        f"seeds for {POWER:.0%} power",
        "seeds fixed: Δ [95% CI]",
        "seeds fixed: Wilcoxon p",
        f"seeds fixed: W/T/L{against}",
    ]


def seeds_for_power(needed: int | None, difference: float) -> str:
    """The power analysis's answer as a cell: a count, ``>1000`` when none suffices, ``–`` for Δ = 0."""
    if needed is not None:
        return str(needed)
    return "–" if difference == 0 else f">{MAX_SEEDS:,}"


def _run_level_cells(versus: GroupComparison) -> list[str]:
    """Δ with its run-level interval, p, verdict and seeds needed; or why there is no run-level test."""
    result = versus.run_level
    if result is None:
        return [points(versus.difference.value), "–", versus.run_level_missing, "–"]
    return [
        with_interval(result.difference, signed=True),
        f"{result.p_value:.2g}",
        result.verdict(ALPHA),
        seeds_for_power(result.seeds_needed(), result.difference.value),
    ]


def _seeds_fixed_cells(versus: GroupComparison) -> list[str]:
    return [
        with_interval(versus.difference, signed=True),
        f"{versus.wilcoxon.p_value:.2g}",
        str(versus.record),
    ]


def _convergence_banner(systems: Sequence[System], *, board_wide: bool) -> list[str]:
    """A warning when any ranked system has a trained run that did not converge; nothing otherwise."""
    summaries = [(system.label, system.convergence) for system in sorted(systems, key=lambda s: s.label)]
    lagging = [(label, s) for label, s in summaries if s.not_converged]
    if not lagging:
        return []
    listed = ", ".join(f"{label} {s.not_converged} of {s.applicable}" for label, s in lagging)
    if board_wide:
        trained = sum(s.applicable for _, s in summaries)
        missed = sum(s.not_converged for _, s in lagging)
        text = (
            f"> **Not converged:** {missed} of {trained} trained runs did not meet the convergence rule "
            f"({listed}; see Convergence). Verdicts on this board are about optimisation, not transfer: "
            "they rank how far each method got within the budget."
        )
    else:
        text = f"> **Not converged:** {listed}: verdicts here are about optimisation, not transfer."
    return [text, ""]


def _convergence_lines(board: Leaderboard, curves_image: str | None) -> list[str]:
    """Per system: how many of its trained runs converged, and their source-dev accuracy over seeds; the
    learning curves' plot when there is one."""
    rows = []
    for system in board.comparison.systems:
        summary = system.convergence
        accuracies = summary.dev_accuracies
        if not summary.applicable:
            share, dev, seeds = "n/a (trains nothing)", "–", "–"
        else:
            share = f"{summary.converged}/{summary.applicable}"
            dev = "–" if not accuracies else percent(float(np.mean(accuracies)))
            if len(accuracies) > 1:
                dev += f" [{percent(min(accuracies))}–{percent(max(accuracies))}]"
            seeds = ", ".join(
                f"s{run.seed} "
                + ("–" if v.selected_dev_accuracy is None else percent(v.selected_dev_accuracy))
                + (" ✓" if v.converged else " ✗")
                for run in system.runs
                for v in [run.convergence]
            )
        rows.append([system.label, share, dev, seeds])
    return [
        "## Convergence",
        "",
        f"Rule: {describe_rule()} (docs/budgets.md). Source-dev accuracy: the tested checkpoint on the "
        "sources' dev sets, mean [lowest–highest] over seeds; per seed ✓ converged, ✗ not.",
        "",
        markdown_table(
            ["system", "runs converged", "source-dev accuracy %", "per seed: source-dev %, verdict"],
            rows,
            "lrrl",
        ),
        "",
        *(
            [f"![learning curves: source-dev accuracy and loss per step]({curves_image})", ""]
            if curves_image
            else []
        ),
    ]


def render_markdown(board: Leaderboard, *, command: str, image: str, curves_image: str | None = None) -> str:
    lines = [*_header(board, command, image), "", *_convergence_lines(board, curves_image)]
    for section in board.sections:
        lines += _section_lines(board, section)
    return "\n".join(lines).rstrip("\n") + "\n"


def _errorbars(
    axes: Any, classes: Sequence[Section], system: System, slot: float, color: str, *, delta: bool
) -> None:
    """One system's points across the Joshi classes: accuracy, or its difference to the reference."""
    xs, ys, low, high = [], [], [], []
    for x, section in enumerate(classes):
        entry = next(e for e in section.entries if e.system is system)
        if delta and entry.versus is None:
            continue
        estimate = entry.versus.difference if delta and entry.versus is not None else entry.accuracy
        xs.append(x + slot)
        ys.append(100 * estimate.value)
        low.append(100 * (estimate.value - estimate.low))
        high.append(100 * (estimate.high - estimate.value))
    if xs:
        axes.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, color=color, label=system.label)


def render_plot(board: Leaderboard) -> bytes:
    """PNG: mean accuracy per Joshi class and system with the two-stage bootstrap intervals; with a reference,
    a second panel shows each system's paired difference to it, whose intervals are much narrower than the
    overlapping accuracy intervals suggest."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    classes = [section for section in board.joshi if section.entries]
    systems = board.comparison.systems
    reference = board.reference
    with style.context("default"):
        panels = 2 if reference is not None else 1
        figure = Figure(figsize=(9.5, 4.8 * panels), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
        colors = [f"C{i % 10}" for i in range(len(systems))]
        width = 0.8 / max(len(systems), 1)
        for i, system in enumerate(systems):
            slot = -0.4 + width * (i + 0.5)
            _errorbars(axes[0], classes, system, slot, colors[i], delta=False)
            if reference is not None:
                _errorbars(axes[1], classes, system, slot, colors[i], delta=True)
        labels = [f"{section.name}\n({len(section.compared)} lang.)" for section in classes]
        axes[0].set_ylabel("accuracy % (mean over languages)")
        axes[0].set_title("Accuracy per Joshi class (95% two-stage bootstrap intervals)")
        if reference is not None:
            axes[1].axhline(0.0, color="black", linewidth=0.8)
            axes[1].set_ylabel(f"Δ vs {reference.label} (points)")
            axes[1].set_title(
                f"Paired difference to {reference.label} per Joshi class (95% intervals, seeds fixed)"
            )
        for panel in axes:
            panel.set_xticks(range(len(classes)), labels)
            panel.grid(axis="y", alpha=0.3)
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_leaderboard(
    paths: Sequence[Path],
    out: Path,
    *,
    by: Sequence[GroupBy] = BY_CHOICES,
    reference: str | None = None,
    groups: Sequence[str] = (),
    force: bool = False,
    command: str,
    registry: Registry | None = None,
    published: str | None = None,
) -> tuple[Path, Leaderboard]:
    """Write ``out`` (Markdown), the plot beside it (``.png``) and, when any run trained, its learning curves
    (``-curves.png``); return the plot path and the board. ``published`` names a published table
    (:mod:`xpe_bench.published`) whose replays get a section."""
    from xpe_bench.curves import curves_of
    from xpe_bench.curves import render_plot as render_curves

    if out.suffix != ".md":
        raise UserInputError(f"--out: {out} should end in .md (the plot goes next to it as .png)")
    table = read_published(find_published(published)) if published is not None else None
    board = build(prepare(paths, force=force, registry=registry), by=by, reference=reference, groups=groups)
    curves, _ = curves_of([run for system in board.comparison.systems for run in system.runs])
    curves_image = out.with_name(f"{out.stem}-curves.png") if curves else None
    markdown = render_markdown(
        board,
        command=command,
        image=out.with_suffix(".png").name,
        curves_image=curves_image.name if curves_image else None,
    )
    if table is not None and published is not None:
        section = render_published(compare_published(board, table), table, Path(published).name)
        if not section:
            raise UserInputError(
                f"--published {published}: no system replays any of its columns ({', '.join(table.columns)})"
            )
        markdown = markdown.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    image = out.with_suffix(".png")
    atomic_write_bytes(image, render_plot(board))
    if curves_image is not None:
        atomic_write_bytes(curves_image, render_curves(curves))
    atomic_write_bytes(out, markdown.encode("utf-8"))
    return image, board


# published reference (replays beside the published table they reproduce) ------------------------------------
@dataclass(frozen=True)
class PublishedRow:
    """One group's mean accuracy, published and replayed, over the languages both have."""

    name: str
    languages: int
    published: float
    replayed: tuple[float, ...]
    """One value per system of :attr:`PublishedComparison.systems`."""


@dataclass(frozen=True)
class PublishedComparison:
    """A published column against the board's systems that replay it."""

    column: str
    systems: tuple[System, ...]
    rows: tuple[PublishedRow, ...]
    """Per Joshi class and named group, then over every shared language: means over languages."""
    families: PublishedRow
    """Over every shared language, as the mean over language families of each family's mean."""


def _accuracies(scores: Mapping[str, Any], codes: Sequence[str]) -> dict[str, float]:
    return {code: scores[code].accuracy.value for code in codes}


def compare_published(board: Leaderboard, table: PublishedTable) -> tuple[PublishedComparison, ...]:
    """Every column of ``table`` that some system of the board replays, against those systems."""
    comparison = board.comparison
    families = {code: comparison.table[code].family for code in comparison.items}
    named = [(section.name, section.languages) for section in board.sections]
    if "all" not in {name for name, _ in named}:
        named.append(("all", tuple(comparison.items)))
    compared = []
    for column in table.columns:
        systems = tuple(s for s in comparison.systems if table.column_for(s.runs[0].options) == column)
        if not systems:
            continue
        published = table.values[column]
        scores = [comparison.scores(system) for system in systems]
        rows = []
        for name, codes in named:
            shared = [code for code in comparison.compared_in(codes) if code in published]
            if shared:
                rows.append(
                    PublishedRow(
                        name,
                        len(shared),
                        language_mean(published, shared),
                        tuple(language_mean(_accuracies(s, shared), shared) for s in scores),
                    )
                )
        shared = [code for code in comparison.items if code in published]
        published_mean, count = family_mean({code: published[code] for code in shared}, families)
        family_row = PublishedRow(
            f"all, mean over {count} language families",
            len(shared),
            published_mean,
            tuple(family_mean(_accuracies(s, shared), families)[0] for s in scores),
        )
        compared.append(PublishedComparison(column, systems, tuple(rows), family_row))
    return tuple(compared)


def render_published(comparisons: Sequence[PublishedComparison], table: PublishedTable, name: str) -> str:
    """The board's section comparing replays with the published table (empty without a matching system)."""
    if not comparisons:
        return ""
    lines = [
        f"## Replays against the published table ({name})",
        "",
        f"Published: `{name}` in the reference folder (`$XPE_BENCH_REFERENCE`, else `reference` beside the "
        "data root), whose notes say:",
        "",
        *(f"> {note}" for note in table.notes),
        "",
        "Replay: the board's systems that replay the same outputs (a `source` option naming the column), "
        "scored from their stored predictions under the rule their label names (`scoring`: how an answer "
        "naming several categories counts; docs/methods.md). Each cell is a mean over the group's languages "
        "that both the published table and the board have, of each language's accuracy; in brackets the "
        "replay minus the published value, in points. The last row averages the same languages per language "
        "family first and then over families, each family weighing the same: that is how the paper's Table 4 "
        "'Average' is formed, which is not the mean over languages of the rows above.",
        "",
    ]
    for compared in comparisons:
        headers = ["group", "languages", f"published {compared.column}"] + [s.label for s in compared.systems]
        rows = [
            [
                row.name,
                str(row.languages),
                percent(row.published),
                *(f"{percent(value)} ({points(value - row.published)})" for value in row.replayed),
            ]
            for row in (*compared.rows, compared.families)
        ]
        lines += [
            f"### {compared.column}",
            "",
            markdown_table(headers, rows, "lrr" + "r" * len(compared.systems)),
            "",
        ]
    return "\n".join(lines)
