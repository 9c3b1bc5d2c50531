"""Per-language classification metrics."""

from __future__ import annotations

import numpy as np

ABSTAIN = -1
"""The stored prediction of a method that gave no answer (e.g. an unmappable LLM output): always wrong."""


def abstained(scores: np.ndarray) -> np.ndarray:
    """Rows of class scores that give no answer (all ``-inf``): stored as :data:`ABSTAIN`."""
    return np.isneginf(scores).all(axis=1)


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(gold == pred)) if len(gold) else float("nan")


def macro_f1(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
    """Macro-F1 over the labels present in gold or predictions (a label absent from both is not scored)."""
    scores = []
    for label in range(num_labels):
        tp = int(np.sum((pred == label) & (gold == label)))
        fp = int(np.sum((pred == label) & (gold != label)))
        fn = int(np.sum((pred != label) & (gold == label)))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def language_metrics(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> dict[str, float | int]:
    return {
        "accuracy": accuracy(gold, pred),
        "macro_f1": macro_f1(gold, pred, num_labels),
        "n": len(gold),
        "abstained": int(np.sum(pred == ABSTAIN)),
    }
