"""End to end through the runner on the tiny random backbone: storage, reuse, resume, reload (mock task)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from xpe_bench import training
from xpe_bench.budgets import load_budget
from xpe_bench.errors import UserInputError
from xpe_bench.runner import Runner, RunRequest

pytestmark = pytest.mark.usefixtures("mock_task")


def _request(tmp_path, **overrides):
    values = {
        "task": "mock",
        "method": "spt",
        "budget": load_budget("smoke"),
        "seed": 1,
        "runs_dir": tmp_path / "runs",
        "backbone": "tiny-random",
        "sources": "aaa_Latn,bbb_Latn",
        "targets": "aaa_Latn,ccc_Cyrl",
    }
    values.update(overrides)
    return RunRequest(**values)


def test_run_writes_everything_and_reuses_finished_work(registry, tmp_path):
    runner = Runner(registry)
    outcome = runner.execute(_request(tmp_path))[0]
    path = outcome.store.path
    record = outcome.record
    assert record.status == "complete" and outcome.store.read_record() == record
    assert record.budget.name == "smoke" and record.seed == 1
    assert record.backbone.weights_sha256 and record.versions["torch"]
    assert record.data.train_examples == 16
    assert "mock/aaa_Latn/train.tsv" in record.data.files
    assert record.method.trainable is not None and record.method.trainable > 0
    assert record.fit is not None and record.fit["steps_run"] == 4
    assert (path / "state.safetensors").exists() and not (path / "fit").exists()
    assert sorted(outcome.metrics) == ["aaa_Latn", "ccc_Cyrl"]
    assert outcome.metrics["ccc_Cyrl"]["n"] == 8
    assert not outcome.reused_state

    again = runner.execute(_request(tmp_path))[0]
    assert again.store.path == path
    assert again.reused_state and sorted(again.reused_languages) == ["aaa_Latn", "ccc_Cyrl"]
    assert again.metrics == outcome.metrics

    more = runner.execute(_request(tmp_path, targets="aaa_Latn,ccc_Cyrl,bbb_Latn"))[0]
    assert more.reused_state and sorted(more.reused_languages) == ["aaa_Latn", "ccc_Cyrl"]
    assert more.record.targets == ("aaa_Latn", "bbb_Latn", "ccc_Cyrl")


def test_other_seed_is_another_run_with_the_same_examples(registry, tmp_path):
    runner = Runner(registry)
    one = runner.execute(_request(tmp_path, seed=1))[0]
    two = runner.execute(_request(tmp_path, seed=2))[0]
    assert one.store.path != two.store.path
    assert one.record.data.train_ids_sha256 == two.record.data.train_ids_sha256
    spt = runner.execute(_request(tmp_path, method="xpe"))[0]
    assert spt.record.data.train_ids_sha256 == one.record.data.train_ids_sha256
    ids = [[r["id"] for r in run.store.read_predictions("ccc_Cyrl")] for run in (one, two, spt)]
    assert ids[0] == ids[1] == ids[2]


def test_interrupted_training_resumes_to_the_same_result(registry, tmp_path, monkeypatch):
    budget = load_budget("smoke").with_overrides(max_steps=6)
    reference = Runner(registry).execute(_request(tmp_path / "ref", budget=budget))[0]

    real = training.clip_grad
    calls = {"n": 0}

    def interrupting(parameters, max_norm):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 5: the last checkpoint is the evaluation at step 4
            raise KeyboardInterrupt
        return real(parameters, max_norm)

    monkeypatch.setattr(training, "clip_grad", interrupting)
    with pytest.raises(KeyboardInterrupt):
        Runner(registry).execute(_request(tmp_path / "cut", budget=budget))
    monkeypatch.setattr(training, "clip_grad", real)
    resumed = Runner(registry).execute(_request(tmp_path / "cut", budget=budget))[0]
    assert resumed.record.fit is not None
    assert resumed.record.fit["resumed_from_step"] == 4 and resumed.record.fit["steps_run"] == 6
    assert resumed.record.fit["running_loss_continued"] is True
    # the train time counts the interrupted session's training up to its checkpoint, not only this one's
    before = resumed.record.fit["train_seconds_before_this_session"]
    assert (
        before > 0
        and resumed.record.timings.train_seconds
        > before + 0.9 * resumed.record.fit["train_seconds_this_session"]
    )
    ref_state, new_state = reference.store.load_state(), resumed.store.load_state()
    assert ref_state.keys() == new_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], new_state[key]), key
    assert resumed.metrics == reference.metrics
    # the whole dev curve, the running training loss included, continues as if never interrupted
    assert resumed.record.fit["history"] == reference.record.fit["history"]


def test_reloaded_state_repredicts_stored_predictions_exactly(registry, tmp_path):
    outcome = Runner(registry).execute(_request(tmp_path, method="xpe"))[0]
    from xpe_bench.backbones import load_backbone
    from xpe_bench.paths import cache_root, resolve_data_root
    from xpe_bench.tasks import TaskData

    spec = registry.method("xpe")
    method = spec.create({})
    backbone = load_backbone("tiny-random", registry.backbones, cache_root())
    method.setup(backbone, outcome.task)
    method.load_state_dict(outcome.store.load_state())
    test = TaskData(outcome.task, resolve_data_root(None, outcome.task.data_root)).load("ccc_Cyrl", "test")
    stored = outcome.store.read_predictions("ccc_Cyrl")
    index = {i: k for k, i in enumerate(test["id"])}
    subset = test.select([index[row["id"]] for row in stored])
    scores = method.predict(subset, load_budget("smoke"))
    assert [row["pred"] for row in stored] == scores.argmax(1).tolist()
    assert np.allclose([row["scores"] for row in stored], scores, atol=1e-5)


def test_bad_input_is_a_user_error(registry, tmp_path):
    runner = Runner(registry)
    with pytest.raises(UserInputError, match="unknown method"):
        runner.execute(_request(tmp_path, method="nope"))
    with pytest.raises(UserInputError, match="neither a language code nor a group"):
        runner.execute(_request(tmp_path, targets="aaa_Latn,xx"))
    with pytest.raises(UserInputError, match="has no option"):
        runner.execute(_request(tmp_path, options={"colour": "red"}))


def test_a_shorter_constant_budget_is_the_prefix_of_a_longer_one(registry, tmp_path):
    """With a constant schedule and warm-up in steps, a run of N steps is exactly the first N steps of a
    longer run: its dev curve is the longer curve's prefix and its selected checkpoint is that prefix's best.
    This is what lets a learning curve stand for every budget of fewer steps (docs/budgets.md)."""
    recipe = {
        "schedule": "constant",
        "warmup_ratio": 0.5,
        "warmup_steps": 2,
        "eval_every": 2,
        "select_best": True,
    }
    short, long = (replace(load_budget("smoke"), **recipe, max_steps=steps) for steps in (6, 12))
    runner = Runner(registry)
    curves = [runner.execute(_request(tmp_path, budget=b))[0].record.to_dict()["fit"] for b in (short, long)]
    assert [point["step"] for point in curves[0]["history"]] == [2, 4, 6]
    assert curves[0]["history"] == curves[1]["history"][:3]
    best = max(curves[0]["history"], key=lambda point: (point["dev_accuracy"], -point["dev_loss"]))
    assert curves[0]["selected_step"] == best["step"]
