"""Learning curves of trained runs: source-dev accuracy and train/dev loss against steps, with verdicts.

Reads the dev curve every trained run stores (:attr:`xpe_bench.run_record.RunRecord.history`) from run
directories or compact files, so curves of finished, committed runs can be redrawn without re-training.
Writes a PNG (one row of panels per system, one line per seed) and the same numbers as a Markdown table and
as JSON beside it. The output is deterministic, like the leaderboards': systems and seeds in sorted order,
fixed number formats, and a PNG written without metadata.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpe_bench.comparison import Run, expand_run_paths, group_systems, load_record
from xpe_bench.convergence import (
    RULE,
    RULE_VERSION,
    Convergence,
    assess_prefix,
    converged_from,
    describe_rule,
    rule_parameters,
)
from xpe_bench.errors import UserInputError
from xpe_bench.leaderboard import markdown_table
from xpe_bench.store import atomic_write_bytes


@dataclass(frozen=True)
class Curve:
    """One run's dev curve: its evaluations in step order."""

    system: str
    run: Run
    history: tuple[Mapping[str, Any], ...]

    @property
    def convergence(self) -> Convergence:
        return self.run.convergence

    @property
    def prefix_exact(self) -> bool:
        """Whether the run's first N steps are a run of N steps under the same recipe (a constant schedule
        with warm-up in steps), so that its curve tells what shorter budgets get."""
        budget = self.run.record.budget.settings
        return budget.get("schedule") == "constant" and budget.get("warmup_steps") is not None

    @property
    def select_best(self) -> bool:
        return bool(self.run.record.budget.settings.get("select_best", True))

    @property
    def converged_from(self) -> int | None:
        """First step from which every shorter run of the same recipe converges (prefix-exact curves only)."""
        return converged_from(self.history, select_best=self.select_best) if self.prefix_exact else None


def common_converged_from(curves: Sequence[Curve]) -> int | None:
    """The smallest step count at which every curve's run, stopped there, converges and stays converged
    for every longer run measured; ``None`` unless every curve is prefix-exact and converges stably."""
    steps = [curve.converged_from for curve in curves]  # None for a curve that is not prefix-exact
    if not curves or any(step is None for step in steps):
        return None
    return max(step for step in steps if step is not None)


def prefix_key(curve: Curve) -> tuple[object, ...]:
    """What a run must share with a curve, besides the recipe, to be that curve's prefix: the task, the
    method and its options, the seed, the backbone and the exact training and dev examples."""
    record = curve.run.record
    options = json.dumps(dict(record.method.options), sort_keys=True, default=str)
    data = (record.data.train_ids_sha256, record.data.dev_ids_sha256)
    return (record.task.name, record.method.name, options, record.seed, record.backbone.name, data)


def _running_loss_restarted(curve: Curve) -> bool:
    """Whether the run resumed from a checkpoint that predates the running loss being checkpointed (its
    record says ``running_loss_continued: false``, or, written before that field, says it resumed)."""
    fit = curve.run.record.fit or {}
    return not fit.get("running_loss_continued", not fit.get("resumed_from_step"))


def prefix_departures(run: Curve, curve: Curve) -> list[str]:
    """How ``run`` departs from the first ``max_steps`` steps of the prefix-exact ``curve`` of the same
    :func:`prefix_key` (an empty list: it is that prefix): every evaluation's step, dev accuracy, dev loss
    and train loss must be equal, and its selected checkpoint and verdict those :func:`assess_prefix`
    predicts from the curve. A budget read off learning curves is trusted because this holds.

    The train loss is the loop's running average, a progress figure rather than the model's state. Runs
    resumed before the loop checkpointed it restarted it from zero, so where either side did, it is left
    out; the dev evaluations, computed from the weights, must still agree bit for bit."""
    steps = int(run.run.record.budget.settings["max_steps"])
    restarted = _running_loss_restarted(run) or _running_loss_restarted(curve)
    fields = ("step", "dev_accuracy", "dev_loss") + (() if restarted else ("train_loss",))
    got = [tuple(point.get(name) for name in fields) for point in run.history]
    want = [tuple(point.get(name) for name in fields) for point in curve.history if point["step"] <= steps]
    problems = []
    if got != want:
        pairs = enumerate(zip(got, want, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
        problems.append(f"curves differ from evaluation {first + 1} ({len(got)} vs {len(want)} points)")
    predicted = assess_prefix(curve.history, steps, select_best=curve.select_best)
    verdict = run.convergence
    if (verdict.status, verdict.selected_step) != (predicted.status, predicted.selected_step):
        problems.append(
            f"verdict {verdict.status} at step {verdict.selected_step}, the curve predicts "
            f"{predicted.status} at step {predicted.selected_step}"
        )
    return problems


def curves_of(runs: Sequence[Run]) -> tuple[list[Curve], list[str]]:
    """The curves of the trained runs among ``runs`` (grouped and labelled as systems) and the names of the
    runs left out because they trained nothing or recorded no dev curve."""
    curves: list[Curve] = []
    skipped: list[str] = []
    for system in group_systems(runs):
        for run in system.runs:
            points = tuple(h for h in run.record.history if h.get("dev_accuracy") is not None)
            if points:
                curves.append(Curve(system.label, run, points))
            else:
                skipped.append(run.name)
    return curves, sorted(skipped)


def load_curves(paths: Iterable[Path]) -> tuple[list[Curve], list[str]]:
    """Curves of run directories, compact files, or folders of them (runs need not be evaluated yet)."""
    runs = [
        Run(path=run_path, record=load_record(run_path), predictions={})
        for path in paths
        for run_path in expand_run_paths(path)
    ]
    curves, skipped = curves_of(runs)
    if not curves:
        raise UserInputError(
            "none of the runs has a dev curve (runs of methods that train nothing have none; a run still "
            "training records its curve when its fit ends)"
        )
    return curves, skipped


def _by_system(curves: Sequence[Curve]) -> dict[str, list[Curve]]:
    systems: dict[str, list[Curve]] = {}
    for curve in curves:
        systems.setdefault(curve.system, []).append(curve)
    return systems


def _seed_label(curve: Curve) -> str:
    verdict = curve.convergence
    return f"seed {curve.run.seed} ({'converged' if verdict.converged else 'not converged'})"


def render_plot(curves: Sequence[Curve]) -> bytes:
    """PNG: per system, dev accuracy (left) and dev loss (solid) with train loss (dashed) (right)."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = _by_system(curves)
    with style.context("default"):
        height = 2.5 * len(systems) + 0.6
        figure = Figure(figsize=(10, height), dpi=80)
        FigureCanvasAgg(figure)
        axes = figure.subplots(len(systems), 2, squeeze=False)
        for row, (label, members) in enumerate(systems.items()):
            accuracy, loss = axes[row]
            for i, curve in enumerate(members):
                color = f"C{i % 10}"
                steps = [h["step"] for h in curve.history]
                accuracy.plot(
                    steps,
                    [100 * h["dev_accuracy"] for h in curve.history],
                    marker="o",
                    markersize=3,
                    color=color,
                    label=_seed_label(curve),
                )
                loss.plot(
                    steps, [h["dev_loss"] for h in curve.history], marker="o", markersize=3, color=color
                )
                train = [
                    (h["step"], h["train_loss"]) for h in curve.history if h.get("train_loss") is not None
                ]
                if train:
                    loss.plot(*zip(*train, strict=True), linestyle="--", color=color, alpha=0.7)
            accuracy.set_title(f"{label}: source-dev accuracy", fontsize="medium")
            accuracy.set_ylabel("accuracy %")
            loss.set_title(f"{label}: dev loss (solid), train loss (dashed)", fontsize="medium")
            loss.set_ylabel("cross-entropy")
            accuracy.legend(fontsize="small", loc="lower right")
            for panel in (accuracy, loss):
                panel.grid(alpha=0.3)
                panel.set_xlabel("step")
        figure.suptitle(f"Learning curves; verdicts by {RULE} v{RULE_VERSION} (docs/budgets.md)")
        figure.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / height))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _number(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None else f"{scale * float(value):.{digits}f}"


def render_markdown(curves: Sequence[Curve], skipped: Sequence[str], *, command: str, image: str) -> str:
    lines = [
        "# Learning curves",
        "",
        "Generated by xpe-bench; do not edit by hand. Regenerate with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"![learning curves]({image})",
        "",
        f"Convergence rule: {describe_rule()} (docs/budgets.md).",
        "",
    ]
    if skipped:
        lines += [f"Left out (no dev curve: nothing trained, or still training): {', '.join(skipped)}.", ""]
    lines += _steps_to_converge(curves)
    for label, members in _by_system(curves).items():
        lines += [f"## {label}", ""]
        for curve in members:
            verdict = curve.convergence
            lines.append(
                f"- seed {curve.run.seed} (`{curve.run.name}`): **{verdict.status}** ({verdict.reason}); "
                f"best dev accuracy {_number(verdict.best_dev_accuracy, 100, 1)}% at step {verdict.best_step}"
            )
        steps = sorted({h["step"] for curve in members for h in curve.history})
        by_step = [{h["step"]: h for h in curve.history} for curve in members]
        headers = ["step"] + [
            f"s{curve.run.seed} {what}"
            for curve in members
            for what in ("dev acc %", "dev loss", "train loss")
        ]
        rows = [
            [str(step)]
            + [
                cell
                for points in by_step
                for cell in (
                    _number(points.get(step, {}).get("dev_accuracy"), 100, 1),
                    _number(points.get(step, {}).get("dev_loss")),
                    _number(points.get(step, {}).get("train_loss")),
                )
            ]
            for step in steps
        ]
        lines += ["", markdown_table(headers, rows, "r" * len(headers)), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _steps_to_converge(curves: Sequence[Curve]) -> list[str]:
    """The section that reads budgets off the curves: per run, the step from which it is converged for good,
    and what a run stopped at the common step keeps of each curve's best."""
    if not all(curve.prefix_exact for curve in curves):
        return [
            "Steps to converge: not read off these curves: a run's first N steps are a run of N steps "
            "only under a `constant` schedule with `warmup_steps` set, and some of these runs used another "
            "recipe.",
            "",
        ]
    common = common_converged_from(curves)
    lines = [
        "## Steps to converge",
        "",
        "These runs use a constant learning rate after a warm-up of fixed length, so the first N steps of "
        "a curve are exactly the run of a budget that differs only by `max_steps = N` (same data order, "
        "dropout masks and learning rates); the verdict of that run is the rule applied to the curve up to "
        "N, with the best checkpoint up to N selected. *Converged from* is the first evaluated step from "
        "which every such run is converged, up to the end of the curve.",
        "",
    ]
    headers = ["system", "seed", "converged from step", "best dev acc % (step)"]
    if common is not None:
        headers += [f"selected at {common} steps: dev acc % (step)"]
    rows = []
    for curve in curves:
        verdict = curve.convergence
        row = [
            curve.system,
            str(curve.run.seed),
            "never" if curve.converged_from is None else str(curve.converged_from),
            f"{_number(verdict.best_dev_accuracy, 100, 1)} ({verdict.best_step})",
        ]
        if common is not None:
            stopped = assess_prefix(curve.history, common, select_best=curve.select_best)
            row.append(f"{_number(stopped.selected_dev_accuracy, 100, 1)} ({stopped.selected_step})")
        rows.append(row)
    lines += [markdown_table(headers, rows, "llrrr"[: len(headers)]), ""]
    if common is None:
        lines += ["Not every run converges for good within its curve: no step count converges them all.", ""]
    else:
        lines += [
            f"Every run, stopped at **{common} steps** or later, is converged: the smallest budget of this "
            "recipe that converges all of them.",
            "",
        ]
    return lines


def curves_json(curves: Sequence[Curve], skipped: Sequence[str]) -> dict[str, Any]:
    return {
        "rule": rule_parameters(),
        "common_converged_from": common_converged_from(curves),
        "runs": [
            {
                "system": curve.system,
                "run": curve.run.name,
                "method": curve.run.method,
                "seed": curve.run.seed,
                "convergence": curve.convergence.to_dict(),
                "converged_from": curve.converged_from,
                "history": [dict(h) for h in curve.history],
            }
            for curve in curves
        ],
        "skipped": list(skipped),
    }


def write_curves(paths: Sequence[Path], out: Path, *, command: str) -> tuple[list[Path], list[Curve]]:
    """Write ``out`` (PNG) and, beside it, ``.md`` and ``.json`` with the same numbers; returns the paths
    written and the curves."""
    if out.suffix != ".png":
        raise UserInputError(f"--out: {out} should end in .png (the tables go next to it as .md and .json)")
    curves, skipped = load_curves(paths)
    markdown, data = out.with_suffix(".md"), out.with_suffix(".json")
    atomic_write_bytes(out, render_plot(curves))
    atomic_write_bytes(markdown, render_markdown(curves, skipped, command=command, image=out.name).encode())
    text = json.dumps(curves_json(curves, skipped), sort_keys=True, indent=1, ensure_ascii=False)
    atomic_write_bytes(data, (text + "\n").encode())
    return [out, markdown, data], curves
