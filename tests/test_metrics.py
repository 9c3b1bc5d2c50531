"""How items are credited: ties at the top score (1/k), abstentions (wrong, and charged in macro-F1)."""

from __future__ import annotations

import numpy as np
import pytest
from hand_made import hand_made_record

from xpe_bench import statistics as st
from xpe_bench.compact import export_run
from xpe_bench.comparison import load_run
from xpe_bench.metrics import accuracy, answer_weights, credit, language_metrics, macro_f1, tied_labels
from xpe_bench.store import RunStore


def _classic_macro_f1(gold: np.ndarray, pred: np.ndarray, num_labels: int) -> float:
    """Textbook count-based macro-F1, 2 tp / (2 tp + fp + fn), over labels in gold or predictions."""
    scores = []
    for label in range(num_labels):
        tp = np.sum((pred == label) & (gold == label))
        fp = np.sum((pred == label) & (gold != label))
        fn = np.sum((pred != label) & (gold == label))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def test_without_ties_and_abstentions_macro_f1_is_the_classic_one():
    rng = np.random.default_rng(0)
    for num_labels in (2, 3, 7):
        for _ in range(50):
            gold = rng.integers(0, num_labels, 30)
            pred = np.where(rng.random(30) < 0.5, gold, rng.integers(0, num_labels, 30))
            assert macro_f1(gold, pred, num_labels) == _classic_macro_f1(gold, pred, num_labels)
            score = st.score_language(gold, pred, num_labels, resamples=20)
            assert score.macro_f1.value == macro_f1(gold, pred, num_labels)
            assert score.accuracy.value == accuracy(gold, pred)


def test_an_abstention_is_a_false_negative_and_spreads_a_false_positive_over_the_other_labels():
    gold = np.array([0, 0, 1, 2])
    pred = np.array([0, -1, 1, 1])
    # item 1 abstains (gold 0): half a prediction on label 1 and on label 2
    # label 0: tp 1, predicted 1, gold 2 -> 2/3; label 1: tp 1, predicted 2.5, gold 1 -> 2/3.5;
    # label 2: tp 0, predicted 0.5, gold 1 -> 0
    assert macro_f1(gold, pred, 3) == pytest.approx((2 / 3 + 2 / 3.5 + 0) / 3)
    assert macro_f1(gold, pred, 3) < _classic_macro_f1(gold, pred, 3)  # which ignored the abstention's fp
    assert accuracy(gold, pred) == 0.5
    weights, denominator = answer_weights(gold, pred, 3)
    assert denominator == 2 and weights[1].tolist() == [0, 1, 1] and weights[0].tolist() == [2, 0, 0]


def test_every_item_carries_one_answer_so_micro_precision_is_accuracy():
    """Abstentions included, the answer mass sums to the item count: pooled over labels, precision is the
    accuracy, for an abstaining system exactly as for one that always answers."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        gold = rng.integers(0, 7, 40)
        pred = np.where(rng.random(40) < 0.5, gold, -1)
        weights, denominator = answer_weights(gold, pred, 7)
        assert weights.sum() == 40 * denominator
        assert weights[np.arange(40), gold].sum() / weights.sum() == accuracy(gold, pred)


def test_a_tie_of_k_labels_earns_1_over_k_when_it_holds_the_gold_label():
    gold = np.array([0, 1, 2, 1])
    pred = np.array([0, 0, 0, -1])
    tied = {1: (0, 1), 2: (0, 1, 3)}
    assert credit(gold, pred, tied).tolist() == [1.0, 0.5, 0.0, 0.0]
    assert accuracy(gold, pred, tied) == pytest.approx(1.5 / 4)
    metrics = language_metrics(gold, pred, 4, tied)
    assert metrics["accuracy"] == pytest.approx(0.375) and metrics["abstained"] == 1


def test_macro_f1_with_a_tie_hand_computed():
    gold = np.array([0, 1])
    pred = np.array([0, 0])
    # item 1 splits its answer between labels 0 and 1: label 0 tp 1, predicted 1.5, gold 1 -> 2/2.5;
    # label 1 tp 0.5, predicted 0.5, gold 1 -> 1/1.5
    assert macro_f1(gold, pred, 2, {1: (0, 1)}) == pytest.approx((2 / 2.5 + 1 / 1.5) / 2)


def test_bootstrap_scores_credit_ties_like_the_metrics_module():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 7, 50)
    pred = np.stack([np.where(rng.random(50) < 0.6, gold, rng.integers(-1, 7, 50)) for _ in range(2)])
    ties = [{3: (int(gold[3]), (int(gold[3]) + 1) % 7), 4: (0, 1, 2)}, {5: (1, 2)}]
    pred[0, 3], pred[0, 4], pred[1, 5] = min(ties[0][3]), 0, 1
    score = st.score_languages({"x": (gold, pred, ties)}, 7, resamples=300)["x"]
    expected = [accuracy(gold, row, tied) for row, tied in zip(pred, ties, strict=True)]
    assert score.seed_accuracy == pytest.approx(expected)
    assert score.accuracy.value == pytest.approx(np.mean(expected))
    f1 = [macro_f1(gold, row, 7, tied) for row, tied in zip(pred, ties, strict=True)]
    assert score.macro_f1.value == pytest.approx(np.mean(f1))


def test_paired_tests_take_fractional_credit_exactly():
    half = np.full(10, 0.5)
    result = st.paired_test(half, np.zeros(10), test="permutation", resamples=200)
    assert result.difference.value == 0.5 and result.a_only == 5.0
    assert result.p_value == pytest.approx(2 * 0.5**10)  # ten equal positive differences
    third = st.paired_test(np.full(6, 1 / 3), np.full(6, 1 / 3), test="permutation", resamples=200)
    assert third.difference.value == 0 and third.p_value == 1.0
    with pytest.raises(ValueError, match="one seed per method and 0/1"):
        st.paired_test(half, np.zeros(10), test="mcnemar")
    with pytest.raises(ValueError, match="denominators"):
        st.paired_test(np.full(3, 1 / 7919), np.zeros(3))  # 7919: a prime above the limit


def test_ties_are_found_before_rounding_and_survive_the_store_and_compact_files(tmp_path):
    assert tied_labels(np.array([[1.0, 1.0, 0.0], [-np.inf] * 3, [0.1234561, 0.1234562, 0.0]])) == {0: (0, 1)}
    store = RunStore(tmp_path / "run")
    scores = np.array([[1.0, 1.0, 0.0], [0.1234561, 0.1234562, 0.0], [-np.inf] * 3], dtype=np.float64)
    store.write_predictions("xx_Latn", ["a", "b", "c"], [1, 1, 2], scores)
    rows = store.read_predictions("xx_Latn")
    assert rows[0]["tied"] == [0, 1] and rows[0]["pred"] == 0
    assert "tied" not in rows[1] and rows[1]["scores"][0] == rows[1]["scores"][1]  # equal only once rounded
    assert store.compute_metrics(3)["xx_Latn"]["accuracy"] == pytest.approx(1.5 / 3)

    store.write_record(hand_made_record("hand-made", method="replay", labels=["a", "b", "c"]))
    store.write_metrics(store.compute_metrics(3))
    for path in (store.path, export_run(store.path, tmp_path / "compact")):
        items = load_run(path).predictions["xx_Latn"]
        assert dict(items.tied) == {0: (0, 1)} and items.pred.tolist() == [0, 1, -1]
