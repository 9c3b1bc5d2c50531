"""The run record: every committed result reads and writes back unchanged, bad records are refused with the
file's name, and each state change gives the record the runner writes."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from xpe_bench.errors import CorruptRunFile, UserInputError
from xpe_bench.run_record import (
    RECORD_SCHEMA,
    RECOVERED,
    InitFromRecord,
    MethodRecord,
    RunRecord,
    config_key,
)
from xpe_bench.store import MANIFEST, RunStore

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    path
    for folder in ("leaderboards/results", "benchmarks/results")
    for path in (REPO / folder).rglob("*.json.gz")
)
WHERE = Path("runs/some-run/manifest.json")


def _committed(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))["manifest"]


def _new(**changes) -> RunRecord:
    identity = {"task": "mock", "seed": 3}
    record = RunRecord.create(
        identity=identity,
        task={"name": "mock", "version": 2, "labels": ["x", "y"], "description": "a mock", "hub_id": None},
        method=MethodRecord(name="spt", version="1", options={"num_tokens": 4}),
        backbone={"name": "tiny-random", "weights_sha256": "c" * 64, "hidden_size": 8},
        budget={"name": "smoke", "fingerprint": "f" * 64, "max_length": 32, "max_steps": 4},
        seed=3,
        regime="zero-shot-xlt",
        sources=["aaa_Latn"],
        train_ids_sha256="1" * 64,
        dev_ids_sha256="2" * 64,
        versions={"python": "3.11"},
        git={"commit": None, "dirty": None},
        hardware={"cpu_count": 2},
        command=["xpe-bench", "run"],
    )
    return dataclasses.replace(record, **changes)


def test_every_committed_result_reads_and_writes_back_unchanged():
    assert len(COMMITTED) >= 40  # the three leaderboards and the benchmark results
    for path in COMMITTED:
        data = _committed(path)
        record = RunRecord.from_dict(data, path)
        assert record.to_dict() == data, path
        assert record.key == data["key"] and record.status == "complete", path
    spt = (
        REPO
        / "leaderboards/results/sib200-me5-small-joshi5/sib200-spt-me5-small-quick-s1-0bcec473e995.json.gz"
    )
    record = RunRecord.from_dict(_committed(spt), spt)
    described = (record.task.name, record.method.name, record.backbone.name, record.budget.name, record.seed)
    assert described == ("sib200", "spt", "me5-small", "quick", 1)
    assert len(record.task.labels) == 7 and record.method.trainable and record.history
    assert record.convergence is None  # recorded before verdicts existed: assess() derives it
    assert record.assess().applicable


def test_to_dict_is_a_copy_and_the_record_is_frozen():
    record = _new()
    data = record.to_dict()
    data["method"]["options"]["num_tokens"] = 99
    data["sources"].append("zzz_Latn")
    assert record.method.options["num_tokens"] == 4 and record.sources == ("aaa_Latn",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "complete"  # type: ignore[misc]


def test_state_changes_give_the_records_the_runner_writes():
    created = _new()
    assert created.status == "created" and created.key == config_key({"task": "mock", "seed": 3})
    assert created.targets == () and created.fit is None and created.history == ()
    assert "dev_examples" not in created.to_dict()["data"] and created.to_dict()["fit"] is None

    described = created.with_method(
        options={"num_tokens": 4, "added": True}, parameters={"total": 10, "trainable": 3}, roles=None
    )
    assert described.status == "created" and described.method.trainable == 3
    assert described.method.options == {"num_tokens": 4, "added": True}

    training = described.training(train_examples=16, dev_examples=8)
    assert training.status == "training"
    assert (training.data.train_examples, training.data.dev_examples) == (16, 8)

    history = [{"step": s, "train_loss": 1.0, "dev_accuracy": 0.5, "dev_loss": 1.0} for s in (2, 4, 6)]
    fit = {"steps_run": 6, "selected_step": 6, "history": history}
    trained = training.trained(fit, seconds=2.5).trained(fit, seconds=1.5)  # a resumed session adds time
    assert trained.status == "trained" and trained.fit == fit and len(trained.history) == 3
    assert trained.timings.train_seconds == 4.0
    assert trained.convergence == trained.assess().to_dict() and trained.assess().converged

    loaded = trained.with_inputs(files={"b.tsv": "2" * 64, "a.tsv": "1" * 64}, backbone_load_seconds=0.5)
    assert list(loaded.data.files) == ["a.tsv", "b.tsv"] and loaded.timings.backbone_load_seconds == 0.5
    evaluating = loaded.evaluating(seconds=1.0).evaluating(seconds=2.0)
    assert evaluating.status == "evaluating" and evaluating.timings.eval_seconds == 3.0

    complete = evaluating.complete(["ccc_Cyrl", "aaa_Latn"])
    assert complete.status == "complete" and complete.targets == ("aaa_Latn", "ccc_Cyrl")
    assert complete.created == created.created and complete.failure is None
    for record in (created, described, training, trained, loaded, evaluating, complete):
        assert RunRecord.from_dict(record.to_dict(), WHERE) == record


def test_failed_rebuilt_and_supervised_records():
    failed = _new().training(train_examples=4, dev_examples=4).failed("non-finite training loss (nan)")
    assert failed.status == "failed" and failed.failure is not None
    assert failed.failure.error == "non-finite training loss (nan)" and failed.failure.at == failed.updated
    assert failed.data.train_examples == 4  # the failure is recorded on top of what was recorded
    rebuilt = _new().rebuilt({"steps_run": 4})
    assert rebuilt.status == "trained" and rebuilt.recovered == RECOVERED and rebuilt.convergence is None
    supervised = _new(init_from=InitFromRecord(key="k" * 64, path="runs/source", parts="prompt"))
    for record in (failed, rebuilt, supervised):
        assert RunRecord.from_dict(record.to_dict(), WHERE) == record
    assert supervised.to_dict()["init_from"] == {"key": "k" * 64, "path": "runs/source", "parts": "prompt"}


def _broken(edit) -> dict:
    data = _new().to_dict()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema=2), "unknown run record schema 2; this version reads schema 1"),
        (lambda d: d.pop("schema"), "unknown run record schema None; this version reads schema 1"),
        (lambda d: d.update(schema=True), "unknown run record schema True"),
        (lambda d: d.update(status="paused"), "unknown status 'paused'; valid: created, training, trained"),
        (lambda d: d.pop("seed"), "not a run record (missing seed)"),
        (lambda d: d["task"].pop("labels"), "not a run record (missing task.labels)"),
        (lambda d: d["task"].update(version="2"), "task.version is a string, not an integer"),
        (lambda d: d.update(sources="aaa_Latn"), "sources is a string, not a list of strings"),
        (lambda d: d.update(fit={"history": [1, 2]}), "fit.history is a list, not a list of JSON objects"),
        (lambda d: d["timings"].update(train_seconds=None), "timings.train_seconds is null, not a number"),
        (lambda d: d.update(status="failed"), "not a run record (status 'failed' without failure)"),
        (lambda d: d.update(extra=1), "not a run record (unknown field extra)"),
        (lambda d: d["method"].update(extra=1), "unknown field method.extra"),
        (lambda d: d.update(backbone=[]), "backbone is not a JSON object"),
        (lambda d: d["identity"].update(seed=4), "its key does not match its identity (edited or corrupt)"),
    ],
)
def test_a_bad_record_is_refused_naming_the_file(edit, message):
    with pytest.raises(CorruptRunFile) as caught:
        RunRecord.from_dict(_broken(edit), WHERE)
    assert isinstance(caught.value, UserInputError) and caught.value.path == WHERE
    text = str(caught.value)
    assert text.startswith(f"{WHERE}: ") and message in text and "\n" not in text


def test_the_store_reads_and_writes_records(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.read_record() is None
    record = _new().training(train_examples=2, dev_examples=2)
    store.write_record(record)
    assert store.read_record() == record
    assert json.loads((store.path / MANIFEST).read_text())["schema"] == RECORD_SCHEMA
    with pytest.raises(ValueError):  # strict JSON: a NaN is never written
        store.write_record(record.trained({"history": [], "loss": math.nan}, seconds=1.0))
    assert store.read_record() == record  # and the old file is kept
    (store.path / MANIFEST).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CorruptRunFile, match=r"manifest\.json: not a run record \(not a JSON object\)"):
        store.read_record()
    (store.path / MANIFEST).write_text('{"schema": 1, "key"', encoding="utf-8")
    with pytest.raises(CorruptRunFile, match=r"manifest\.json: not valid JSON"):
        store.read_record()


def test_a_committed_record_with_a_changed_field_is_refused():
    path = COMMITTED[0]
    data = copy.deepcopy(_committed(path))
    data["identity"]["seed"] += 1
    with pytest.raises(CorruptRunFile, match="key does not match") as caught:
        RunRecord.from_dict(data, path)
    assert str(caught.value).startswith(str(path))


def test_the_record_imports_no_heavy_module():
    heavy = {"torch", "numpy", "transformers"}
    check = f"import sys, xpe_bench.run_record; print(sorted({heavy!r} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
