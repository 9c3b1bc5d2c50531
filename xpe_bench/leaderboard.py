"""Markdown leaderboards and their plot: one table per Joshi class and per named language group.

A leaderboard is generated, never edited: its header holds the exact command that regenerates it, and the
output is deterministic — bootstrap and permutation draws use fixed seeds, systems and languages are iterated
in sorted order, numbers are formatted with fixed precision, nothing records a time or a host — so
regenerating from the same runs gives the same bytes (the PNG too: it is drawn with matplotlib's default
style and written without metadata).

Reading a row: accuracy is the mean over the compared languages of each language's seed-mean accuracy,
with a two-stage percentile bootstrap interval (languages, then test items); ``sd over seeds`` is the
standard deviation over seeds of that mean; Δ is the mean per-language difference to the reference (same
two-stage interval) and the Wilcoxon p asks whether the system tends to be better across the section's
languages; W/T/L counts the languages where the system is significantly better than / not distinguishable
from / significantly worse than the reference (exact sign-flip test on seed-averaged item correctness,
Holm-corrected over all compared languages). See docs/statistics.md.

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
from xpe_bench.statistics import (
    ALPHA,
    CONFIDENCE,
    RESAMPLES,
    SEED,
    Estimate,
    seed_spread,
    two_stage_interval,
)
from xpe_bench.store import atomic_write_bytes

BY_CHOICES: tuple[GroupBy, ...] = ("joshi", "group")


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
    """Against the reference over the section's compared languages (mean difference with its two-stage
    interval, Wilcoxon signed-rank, win/tie/loss); None for the reference itself or without one."""


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
    reference = board.reference
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
            "intervals",
            f"{100 * CONFIDENCE:.0f}% two-stage percentile bootstrap over languages and test items "
            f"({RESAMPLES:,} resamples, seed {SEED})",
        ),
        (
            "W/T/L",
            "no reference given (--reference)"
            if reference is None
            else f"against {reference.label}: exact sign-flip test per language on seed-averaged item "
            f"correctness, Holm-corrected over the {len(comparison.items)} compared languages, "
            f"alpha {ALPHA}",
        ),
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
        "Δ: mean per-language difference to the reference, in points; Wilcoxon p: two-sided signed-rank test "
        "of those differences across the section's languages (where a small consistent gain shows). "
        "W/T/L: languages where the system is significantly better / not distinguishable / significantly "
        "worse than the reference; with about 200 test items a tie can hide a difference of several points "
        "(see docs/statistics.md)."
    )
    return lines


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


def _section_lines(board: Leaderboard, section: Section) -> list[str]:
    title = f"## {section.name}" + (f" — {section.description}" if section.description else "")
    lines = [title, ""]
    lines += [_coverage_note(board.comparison, section), ""]
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
        f"Δ vs {reference.label} [95% CI]" if reference else "Δ",
        "Wilcoxon p",
        f"W/T/L vs {reference.label}" if reference else "W/T/L",
        "trainable params",
        "train s",
    ]
    rows = []
    for rank, entry in enumerate(section.entries, start=1):
        system = entry.system
        versus = entry.versus
        if versus is not None:
            difference = with_interval(versus.difference, signed=True)
            wilcoxon = f"{versus.wilcoxon.p_value:.2g}"
            record = str(versus.record)
        else:
            difference = wilcoxon = record = "reference" if system is reference else "–"
        rows.append(
            [
                str(rank),
                system.label,
                with_interval(entry.accuracy),
                percent(entry.macro_f1),
                "–" if math.isnan(entry.seed_sd) else f"{100 * entry.seed_sd:.1f}",
                str(len(system.seeds)),
                f"{entry.covers}/{len(section.languages)}",
                difference,
                wilcoxon,
                record,
                "–" if system.trainable is None else f"{system.trainable:,}",
                _seconds(system.train_seconds),
            ]
        )
    return [*lines, markdown_table(headers, rows, "rlrrrrrrrlrr"), ""]


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
            axes[1].set_title(f"Paired difference to {reference.label} per Joshi class (95% intervals)")
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
) -> tuple[Path, Leaderboard]:
    """Write ``out`` (Markdown), the plot beside it (``.png``) and, when any run trained, its learning curves
    (``-curves.png``); return the plot path and the board."""
    from xpe_bench.curves import curves_of
    from xpe_bench.curves import render_plot as render_curves

    if out.suffix != ".md":
        raise UserInputError(f"--out: {out} should end in .md (the plot goes next to it as .png)")
    board = build(prepare(paths, force=force, registry=registry), by=by, reference=reference, groups=groups)
    image = out.with_suffix(".png")
    atomic_write_bytes(image, render_plot(board))
    curves, _ = curves_of([run for system in board.comparison.systems for run in system.runs])
    curves_image = out.with_name(f"{out.stem}-curves.png") if curves else None
    if curves_image is not None:
        atomic_write_bytes(curves_image, render_curves(curves))
    markdown = render_markdown(
        board, command=command, image=image.name, curves_image=curves_image.name if curves_image else None
    )
    atomic_write_bytes(out, markdown.encode("utf-8"))
    return image, board
