"""Per-language classification metrics, and how an item's answer is credited.

Every test item carries one unit of *answer mass*, spread over the labels (:func:`answer_weights`):

- a prediction (the top score) puts all of it on its label;
- a *tie* at the top score between k labels puts 1/k on each: the expected credit of breaking the tie
  uniformly at random. Trained methods' float scores do not tie; the ``fractional`` GPT replay scores an
  answer naming k categories this way;
- an *abstention* (all scores ``-inf``, stored as :data:`ABSTAIN`) puts 1/(K - 1) on each of the K - 1
  labels other than the gold one: it is scored as a wrong answer spread evenly over the wrong labels.

Accuracy is the mean mass on the gold label (an abstention earns 0, a tie 1/k or 0). Macro-F1 takes per
label ``tp`` = mass on the label from items of that gold label, ``predicted`` = all mass on the label,
``gold`` = items of that gold label, and F1 = 2 tp / (predicted + gold). Without ties and abstentions this is
the usual count-based macro-F1. An abstention counts as a false negative for its gold label *and* adds
false-positive mass to the other labels, so abstaining costs precision like a wrong answer does: every item
contributes one answer's worth of predictions, and a system that abstains cannot gain macro-F1 over its
accuracy by abstaining (counting abstentions as false negatives only lets its precision ignore them, which is
how an abstaining GPT replay once showed a macro-F1 7 points above its accuracy).

Weights are integers over a common denominator, so sums of them stay exact (see
:mod:`xpe_bench.statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

ABSTAIN = -1
"""The stored prediction of a method that gave no answer (e.g. an unmappable LLM output): always wrong."""

Ties = Mapping[int, Sequence[int]]
"""Item position -> the labels tied at its top score (two or more; the stored ``pred`` is the first)."""


def abstained(scores: np.ndarray) -> np.ndarray:
    """Rows of class scores that give no answer (all ``-inf``): stored as :data:`ABSTAIN`."""
    return np.isneginf(scores).all(axis=1)


def tied_labels(scores: np.ndarray) -> dict[int, tuple[int, ...]]:
    """Rows whose top score is shared by two or more labels, and those labels (abstentions excluded)."""
    finite = ~abstained(scores)
    top = scores == scores.max(axis=1, keepdims=True)
    rows = np.flatnonzero(finite & (top.sum(axis=1) > 1))
    return {int(row): tuple(int(label) for label in np.flatnonzero(top[row])) for row in rows}


def answer_weights(
    gold: np.ndarray, pred: np.ndarray, num_labels: int, tied: Ties | None = None
) -> tuple[np.ndarray, int]:
    """Integer ``(n, num_labels)`` weights and their denominator: item i puts ``weights[i, k] / denominator``
    of its answer on label k (module docstring). The denominator is 1 without ties and abstentions."""
    tied = tied or {}
    abstains = pred == ABSTAIN
    sizes = {len(labels) for labels in tied.values()}
    if abstains.any() and num_labels > 1:
        sizes.add(num_labels - 1)
    denominator = math.lcm(1, *sizes)
    weights = np.zeros((len(gold), num_labels), dtype=np.int64)
    answered = np.flatnonzero(~abstains)
    weights[answered, pred[answered]] = denominator
    for row, labels in tied.items():
        weights[row] = 0
        weights[row, list(labels)] = denominator // len(labels)
    if num_labels > 1:
        rows = np.flatnonzero(abstains)
        weights[rows] = denominator // (num_labels - 1)
        weights[rows, gold[rows]] = 0
    return weights, denominator


def credit(gold: np.ndarray, pred: np.ndarray, tied: Ties | None = None) -> np.ndarray:
    """Per-item credit in [0, 1]: 1 right, 0 wrong or abstained, 1/k for a tie of k labels holding gold."""
    values = (pred == gold).astype(np.float64)
    for row, labels in (tied or {}).items():
        values[row] = (gold[row] in labels) / len(labels)
    return values


def accuracy(gold: np.ndarray, pred: np.ndarray, tied: Ties | None = None) -> float:
    return float(np.mean(credit(gold, pred, tied))) if len(gold) else float("nan")


def macro_f1(gold: np.ndarray, pred: np.ndarray, num_labels: int, tied: Ties | None = None) -> float:
    """Macro-F1 over the labels that hold gold items or answer mass (a label with neither is not scored)."""
    if not len(gold):
        return float("nan")
    weights, denominator = answer_weights(gold, pred, num_labels, tied)
    gold_hot = gold[:, None] == np.arange(num_labels)
    tp = (weights * gold_hot).sum(axis=0)
    total = weights.sum(axis=0) + denominator * gold_hot.sum(axis=0)
    scored = total > 0
    return float(np.mean(2 * tp[scored] / total[scored]))


def language_metrics(
    gold: np.ndarray, pred: np.ndarray, num_labels: int, tied: Ties | None = None
) -> dict[str, float | int]:
    return {
        "accuracy": accuracy(gold, pred, tied),
        "macro_f1": macro_f1(gold, pred, num_labels, tied),
        "n": len(gold),
        "abstained": int(np.sum(pred == ABSTAIN)),
    }
