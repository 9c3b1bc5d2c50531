from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xpe_bench.metrics import language_metrics, macro_f1
from xpe_bench.store import RunStore, atomic_write_json, config_key


def test_config_key_is_order_independent():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("xpe_bench.store.os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_predictions_roundtrip_and_metrics(tmp_path):
    store = RunStore(tmp_path / "run")
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]], dtype=np.float32)
    store.write_predictions("xx_Latn", ["a", "b", "c"], [1, 0, 0], scores)
    rows = store.read_predictions("xx_Latn")
    assert [r["pred"] for r in rows] == [1, 0, 2]
    assert rows[0]["scores"] == pytest.approx([0.1, 0.9, 0.0])
    metrics = store.compute_metrics(3)
    assert metrics["xx_Latn"]["accuracy"] == pytest.approx(2 / 3)
    assert metrics["xx_Latn"]["n"] == 3
    assert store.predicted_languages() == ["xx_Latn"]


def test_state_roundtrip(tmp_path):
    store = RunStore(tmp_path / "run")
    state = {"head.weight": torch.randn(3, 4)}
    store.save_state(state, {"run_key": "k"})
    assert store.has_state
    assert torch.equal(store.load_state()["head.weight"], state["head.weight"])


def test_macro_f1_against_hand_computed():
    gold = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # label 0: tp1 fp1 fn1 -> 0.5; label 1: tp2 fp1 fn0 -> 0.8; label 2: tp0 fp0 fn1 -> 0
    assert macro_f1(gold, pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert language_metrics(gold, pred, 3)["accuracy"] == pytest.approx(0.6)


def test_abstention_is_stored_as_minus_one_and_counts_wrong(tmp_path):
    store = RunStore(tmp_path / "run")
    scores = np.array([[-np.inf, -np.inf], [0.0, 1.0]], dtype=np.float32)
    store.write_predictions("xx_Latn", ["a", "b"], [0, 1], scores)
    rows = store.read_predictions("xx_Latn")
    assert [r["pred"] for r in rows] == [-1, 1]
    assert rows[0]["scores"] == [None, None]
    metrics = store.compute_metrics(2)["xx_Latn"]
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["abstained"] == 1 and metrics["n"] == 2
