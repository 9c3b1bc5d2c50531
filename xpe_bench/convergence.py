"""Did a run finish optimising? A documented verdict over its source-dev curve.

A run records its source-dev accuracy and loss at every evaluation (``RunRecord.history``). The rule
``dev-plateau`` v1 splits that curve at two thirds of the last evaluated step into a *head* (evaluations at
or before the split) and a *tail* (the evaluations after it), and calls the run **converged** when the tail
no longer bought anything that matters:

1. the curve has at least :data:`MIN_EVALUATIONS` dev evaluations (a trend needs more than two points);
2. the tail's best dev accuracy exceeds the head's best by at most :data:`ACCURACY_TOLERANCE` (2 points);
3. the tail made at most :data:`LOSS_SHARE_TOLERANCE` (15%) of the run's whole fall in dev loss: the head's
   lowest loss minus the tail's lowest, over the first evaluation's loss minus the lowest of all.

Why both signals. Dev accuracy on a few hundred items moves in coarse steps with a sampling error of about
2.5 points (224 items), so one or two evaluations cannot tell a slow climb from a plateau: `quick`'s SPT and
XPE seed-2 runs on SIB-200 gained only 1.8 and -0.4 points of accuracy over their last 50 steps, 14 points
below their seed-1 siblings, while 39% and 22% of their dev-loss fall happened in those steps. Cross-entropy
is continuous and keeps moving while a model still learns, so condition 3 sees what 2 cannot; condition 2
catches accuracy still climbing while the mean loss has stalled (a few confidently wrong items can hold it
up).

Why a *share* of the fall, not a fall relative to the loss itself: tasks settle at different losses (three
classes or seven, easy or hard), and near a low loss a small absolute change is a large relative one, so a
relative fall would fail well-fitted runs for fitting well. Under an exponential approach to an asymptote,
a tail share of 15% means the remaining gap is about 16% of the fall achieved (at most about 14% of the
achievable fall is left). The 2-point tolerance is below the dev sets' sampling error, so condition 2 alone
never *proves* a plateau; it rules out visible climbs.

A curve that peaked and then declined is converged (the budget's best-dev selection tests its best
checkpoint); a noisy plateau is converged because the head's and the tail's bests are draws from one level.
Comparing bests, not last values, makes the verdict insensitive to where in the noise a run stopped.

The thresholds are conventions, not measurements: a run near one is borderline, which is why the numbers
behind every verdict are recorded with it (``RunRecord.convergence``) and shown on the boards.

Methods that train nothing (zero-shot scoring, replayed answers) are *not applicable*. A trained run with
fewer than :data:`MIN_EVALUATIONS` dev evaluations is *not converged*: too few points to show a plateau.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any, Literal

RULE = "dev-plateau"
RULE_VERSION = 1
TAIL_FRACTION = 1 / 3
"""The tail: evaluations after ``(1 - TAIL_FRACTION)`` of the last evaluated step."""
MIN_EVALUATIONS = 3
ACCURACY_TOLERANCE = 0.02
"""Largest gain of the tail's best dev accuracy over the head's best (absolute, 0.02 = 2 points)."""
LOSS_SHARE_TOLERANCE = 0.15
"""Largest share of the run's whole dev-loss fall (first evaluation to lowest) made in the tail."""

Status = Literal["converged", "not converged", "not applicable"]


@dataclass(frozen=True)
class Convergence:
    """A run's verdict and the numbers behind it (``None`` where the curve does not define them)."""

    status: Status
    reason: str
    evaluations: int = 0
    best_step: int | None = None
    best_dev_accuracy: float | None = None
    selected_step: int | None = None
    selected_dev_accuracy: float | None = None
    """Dev accuracy of the checkpoint that was tested (the best one or the last, as the budget selects)."""
    final_train_loss: float | None = None
    tail_from_step: int | None = None
    """First step of the tail."""
    tail_accuracy_gain: float | None = None
    """Tail's best dev accuracy minus the head's best."""
    tail_loss_share: float | None = None
    """Share of the run's dev-loss fall made in the tail (0 when the tail did not lower it)."""
    tail_accuracy_spread: float | None = None
    """Highest minus lowest dev accuracy within the tail."""

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def applicable(self) -> bool:
        return self.status != "not applicable"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": rule_parameters()} | asdict(self)


def rule_parameters() -> dict[str, Any]:
    """The rule's name, version and thresholds, as recorded beside every verdict."""
    return {
        "name": RULE,
        "version": RULE_VERSION,
        "tail_fraction": round(TAIL_FRACTION, 6),
        "min_evaluations": MIN_EVALUATIONS,
        "accuracy_tolerance": ACCURACY_TOLERANCE,
        "loss_share_tolerance": LOSS_SHARE_TOLERANCE,
    }


def describe_rule() -> str:
    """One sentence stating the rule, for boards and reports."""
    tail = Fraction(TAIL_FRACTION).limit_denominator(100)
    return (
        f"{RULE} v{RULE_VERSION}: at least {MIN_EVALUATIONS} dev evaluations, and in the last {tail} of the "
        f"steps the best dev accuracy rose by at most {100 * ACCURACY_TOLERANCE:g} points and at most "
        f"{LOSS_SHARE_TOLERANCE:.0%} of the run's fall in dev loss happened"
    )


def selection_rank(point: Mapping[str, Any]) -> tuple[float, float]:
    """How best-dev selection ranks evaluations: higher dev accuracy, then lower dev loss; the earlier of
    equals wins (training keeps a new best only when it ranks strictly higher, and ``max`` keeps the first).
    One definition for the training loop and for the verdicts that predict its choice."""
    return (point["dev_accuracy"], -point["dev_loss"])


def _dev_points(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [h for h in history if h.get("dev_accuracy") is not None and h.get("dev_loss") is not None]


def assess(fit: Mapping[str, Any] | None) -> Convergence:
    """The verdict for a run's fit report (:attr:`xpe_bench.run_record.RunRecord.fit`)."""
    if not fit or fit.get("trained") is False or "history" not in fit:
        return Convergence("not applicable", "nothing was trained")
    history = list(fit["history"])
    points = _dev_points(history)
    final_train_loss = history[-1].get("train_loss") if history else None
    if not points:
        return Convergence("not converged", "no dev evaluation recorded", final_train_loss=final_train_loss)
    best = max(points, key=selection_rank)
    selected_step = fit.get("selected_step", points[-1]["step"])
    selected = next((h for h in points if h["step"] == selected_step), points[-1])
    known = Convergence(
        "not converged",
        "",
        evaluations=len(points),
        best_step=int(best["step"]),
        best_dev_accuracy=float(best["dev_accuracy"]),
        selected_step=int(selected["step"]),
        selected_dev_accuracy=float(selected["dev_accuracy"]),
        final_train_loss=None if final_train_loss is None else float(final_train_loss),
    )
    if len(points) < MIN_EVALUATIONS:
        return replace(known, reason=f"{len(points)} dev evaluation(s); the rule needs {MIN_EVALUATIONS}")
    split = (1 - TAIL_FRACTION) * points[-1]["step"]
    head = [h for h in points if h["step"] <= split]
    tail = [h for h in points if h["step"] > split]
    if not head:  # evaluations only late in the run: the earliest one stands for the head
        head, tail = points[:1], points[1:]
    gain = max(h["dev_accuracy"] for h in tail) - max(h["dev_accuracy"] for h in head)
    fall = points[0]["dev_loss"] - min(h["dev_loss"] for h in points)
    tail_fall = min(h["dev_loss"] for h in head) - min(h["dev_loss"] for h in tail)
    share = max(tail_fall, 0.0) / fall if fall > 0 else 0.0
    spread = max(h["dev_accuracy"] for h in tail) - min(h["dev_accuracy"] for h in tail)
    measured = replace(
        known,
        tail_from_step=int(tail[0]["step"]),
        tail_accuracy_gain=float(gain),
        tail_loss_share=float(share),
        tail_accuracy_spread=float(spread),
    )
    reasons = []
    if gain > ACCURACY_TOLERANCE:
        reasons.append(f"dev accuracy still rose {100 * gain:.1f} points in the tail")
    if share > LOSS_SHARE_TOLERANCE:
        reasons.append(f"{share:.0%} of the dev-loss fall came in the tail")
    if reasons:
        return replace(measured, reason="; ".join(reasons))
    return replace(measured, status="converged", reason="plateau over the tail")


def assess_prefix(
    history: Sequence[Mapping[str, Any]], step: int, *, select_best: bool = True
) -> Convergence:
    """The verdict of the same run stopped at ``step``. Exact when the run's budget makes shorter runs
    prefixes of longer ones (a ``constant`` schedule with ``warmup_steps``: the same data order, dropout
    masks and learning rates up to ``step``), which is how a learning curve tells what a budget of fewer
    steps gets."""
    points = [h for h in _dev_points(history) if h["step"] <= step]
    if not points:
        return assess({"history": []})
    best = max(points, key=selection_rank)
    return assess({"history": points, "selected_step": best["step"] if select_best else points[-1]["step"]})


def converged_from(history: Sequence[Mapping[str, Any]], *, select_best: bool = True) -> int | None:
    """The first evaluated step from which the curve's every prefix is converged, up to its end (``None``
    when its last prefix, the whole curve, is not). Stable convergence, not the first lucky evaluation:
    accuracy on a few hundred dev items is noisy, and a budget should not stop where noise happened to
    flatter the rule."""
    first = None
    for point in reversed(_dev_points(history)):
        if not assess_prefix(history, int(point["step"]), select_best=select_best).converged:
            break
        first = int(point["step"])
    return first


@dataclass(frozen=True)
class Summary:
    """The verdicts of one system's runs (one per seed)."""

    runs: int
    applicable: int
    """Runs that trained (the others are *not applicable*)."""
    converged: int
    dev_accuracies: tuple[float, ...]
    """Source-dev accuracy of each trained run's tested checkpoint (runs with a dev curve only)."""

    @classmethod
    def of(cls, verdicts: Sequence[Convergence]) -> Summary:
        return cls(
            runs=len(verdicts),
            applicable=sum(v.applicable for v in verdicts),
            converged=sum(v.converged for v in verdicts),
            dev_accuracies=tuple(
                v.selected_dev_accuracy for v in verdicts if v.selected_dev_accuracy is not None
            ),
        )

    @property
    def not_converged(self) -> int:
        return self.applicable - self.converged
