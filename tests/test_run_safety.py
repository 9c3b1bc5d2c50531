"""What a run reads back cannot execute code; diverged runs fail; corrupt files are recovered, never silently;
a run directory is used by one process at a time."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpe_bench.budgets import load_budget
from xpe_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xpe_bench.cli import app
from xpe_bench.errors import RunFailed, UserInputError
from xpe_bench.runner import Reporters, Runner, RunRequest
from xpe_bench.store import RunStore
from xpe_bench.training import CHECKPOINT_NAME

pytestmark = pytest.mark.usefixtures("mock_task")

cli = CliRunner()


class _Planted:
    """A pickle that, if ever unpickled, leaves a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _request(tmp_path: Path, **overrides) -> RunRequest:
    values = {
        "task": "mock",
        "method": "spt",
        "budget": replace(load_budget("smoke"), max_steps=6, eval_every=2),
        "seed": 1,
        "runs_dir": tmp_path / "runs",
        "backbone": "tiny-random",
        "sources": "aaa_Latn,bbb_Latn",
        "targets": "aaa_Latn,ccc_Cyrl",
    }
    values.update(overrides)
    return RunRequest(**values)


def _runner(registry, notes: list[str]) -> Runner:
    return Runner(registry, Reporters(note=notes.append))


def _snapshot(path: Path) -> dict[str, bytes]:
    """The trained tensors (not the file: its metadata holds timings) and the predictions, as bytes."""
    from safetensors.torch import load_file

    state = load_file(path / "state.safetensors")
    snapshot = {name: tensor.numpy().tobytes() for name, tensor in sorted(state.items())}
    return snapshot | {p.name: p.read_bytes() for p in sorted((path / "predictions").glob("*.jsonl"))}


@pytest.fixture
def finished(registry, tmp_path):
    outcome = _runner(registry, []).execute(_request(tmp_path))[0]
    return outcome.store.path, _snapshot(outcome.store.path)


def test_checkpoint_round_trip_and_a_planted_pickle_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()

    import torch

    state = {"w": torch.arange(3.0), "loop": {"step": 4, "history": [{"a": 0.5}]}, "opt": {0: {"b": (1, 2)}}}
    save_checkpoint(state, path)
    back = load_checkpoint(path)
    assert torch.equal(back["w"], state["w"])
    assert back["loop"] == state["loop"] and back["opt"] == state["opt"]


def test_planted_pickles_in_a_run_directory_never_run(registry, tmp_path, finished):
    path, before = finished
    marker = tmp_path / "code-ran"
    (path / "state.safetensors").unlink()  # the state is gone: the next run must train again, from fit/
    fit = path / "fit"
    fit.mkdir()
    (fit / "fit-checkpoint.pt").write_bytes(pickle.dumps(_Planted(marker)))  # the old pickle name
    (fit / CHECKPOINT_NAME).write_bytes(pickle.dumps(_Planted(marker)))  # and the current name
    notes: list[str] = []
    outcome = _runner(registry, notes).execute(_request(tmp_path))[0]
    assert not marker.exists()
    assert outcome.record.status == "complete"
    assert any("never loaded" in note for note in notes)
    assert any("unreadable fit checkpoint" in note or "not a safetensors" in note for note in notes)
    assert _snapshot(path) == before  # trained again, identically


def test_a_diverging_run_fails_and_is_never_used(registry, tmp_path):
    budget = replace(
        load_budget("smoke"),
        name="explodes",
        learning_rates={"prompt": 1e30, "prompt_encoder": 1e30, "head": 1e30, "backbone": 1e30},
    )
    runner = _runner(registry, [])
    with pytest.raises(RunFailed, match="non-finite"):
        runner.execute(_request(tmp_path, budget=budget))
    (path,) = (tmp_path / "runs").iterdir()
    text = (path / "manifest.json").read_text()

    def no_constants(name):
        raise AssertionError(f"manifest holds {name}: not strict JSON")

    manifest = json.loads(text, parse_constant=no_constants)
    assert manifest["status"] == "failed" and "non-finite" in manifest["failure"]["error"]
    assert not (path / "predictions").exists() and not (path / "state.safetensors").exists()
    with pytest.raises(RunFailed, match="failed before"):
        runner.execute(_request(tmp_path, budget=budget))
    result = cli.invoke(app, ["compare", str(path), str(path)])
    assert result.exit_code == 2 and "failed runs are never compared" in result.output


def test_truncated_predictions_are_predicted_again(registry, tmp_path, finished):
    path, before = finished
    target = path / "predictions" / "ccc_Cyrl.jsonl"
    target.write_bytes(target.read_bytes()[:150])
    result = cli.invoke(app, ["compare", str(path), str(path)])
    assert result.exit_code == 2 and "ccc_Cyrl.jsonl" in result.output and "Traceback" not in result.output
    notes: list[str] = []
    outcome = _runner(registry, notes).execute(_request(tmp_path))[0]
    assert outcome.reused_state and outcome.reused_languages == ["aaa_Latn"]
    assert any("ccc_Cyrl.jsonl" in note and "predicting it again" in note for note in notes)
    assert _snapshot(path) == before
    assert list((path / "quarantine").rglob("ccc_Cyrl.jsonl"))


def test_foreign_predictions_are_predicted_again(registry, tmp_path, finished):
    path, before = finished
    aaa, ccc = path / "predictions" / "aaa_Latn.jsonl", path / "predictions" / "ccc_Cyrl.jsonl"
    ccc.write_bytes(aaa.read_bytes())  # well-formed lines, but another language's items
    notes: list[str] = []
    _runner(registry, notes).execute(_request(tmp_path))
    assert any("test split has" in note for note in notes)
    assert _snapshot(path) == before


def test_corrupt_state_is_trained_again(registry, tmp_path, finished):
    path, before = finished
    state = path / "state.safetensors"
    state.write_bytes(state.read_bytes()[:40])
    notes: list[str] = []
    outcome = _runner(registry, notes).execute(_request(tmp_path))[0]
    assert not outcome.reused_state and any("re-training" in note for note in notes)
    assert _snapshot(path) == before


def test_truncated_manifest_is_rebuilt_from_the_state(registry, tmp_path, finished):
    path, before = finished
    manifest = path / "manifest.json"
    original = json.loads(manifest.read_text())
    manifest.write_text(manifest.read_text()[:100])
    result = cli.invoke(app, ["compare", str(path), str(path)])
    assert result.exit_code == 2 and "manifest.json" in result.output and "Traceback" not in result.output
    notes: list[str] = []
    outcome = _runner(registry, notes).execute(_request(tmp_path))[0]
    assert outcome.reused_state and any("rebuilding the record" in note for note in notes)
    assert outcome.record.fit == original["fit"] and outcome.record.recovered
    assert _snapshot(path) == before


def test_a_manifest_of_another_configuration_is_refused(registry, tmp_path, finished):
    path, _ = finished
    other = _runner(registry, []).execute(_request(tmp_path, seed=2))[0].store.path
    (path / "manifest.json").write_bytes((other / "manifest.json").read_bytes())
    with pytest.raises(UserInputError, match="holds another configuration"):
        _runner(registry, []).execute(_request(tmp_path))


def test_a_live_run_holds_its_directory(tmp_path):
    args = ["run", "--task", "mock", "--backbone", "tiny-random", "--budget", "smoke", "--seed", "1"]
    args += ["--sources", "aaa_Latn"]
    args += ["--targets", "aaa_Latn", "--runs-dir", str(tmp_path / "runs")]
    assert cli.invoke(app, args).exit_code == 0
    (path,) = (tmp_path / "runs").iterdir()
    before = _snapshot(path)
    with RunStore(path).locked():
        owner = json.loads((path / "run.owner.json").read_text())
        assert owner["pid"] == os.getpid()
        result = cli.invoke(app, args)
    assert result.exit_code == 75, result.output
    assert f"PID {os.getpid()}" in result.output and "not started" in result.output
    assert _snapshot(path) == before
    assert not (path / "run.owner.json").exists()
    assert cli.invoke(app, args).exit_code == 0  # released: the same command works again


def test_temp_files_of_killed_writes_are_removed(registry, tmp_path, finished):
    path, _ = finished
    leftovers = [path / ".manifest.json.abc123.tmp", path / "predictions" / ".ccc_Cyrl.jsonl.x.tmp"]
    for leftover in leftovers:
        leftover.write_text("partial")
    notes: list[str] = []
    _runner(registry, notes).execute(_request(tmp_path))
    assert not any(p.exists() for p in leftovers)
    assert any("removed 2 temporary file(s)" in note for note in notes)


def test_state_and_predictions_are_world_readable(finished):
    path, _ = finished
    for file in (path / "state.safetensors", path / "manifest.json", path / "predictions" / "aaa_Latn.jsonl"):
        assert file.stat().st_mode & 0o777 == 0o644, file


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    def interrupted(self, request):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "execute", interrupted)
    result = cli.invoke(
        app,
        ["run", "--backbone", "tiny-random", "--budget", "smoke", "--runs-dir", str(tmp_path / "runs")],
    )
    assert result.exit_code == 130
    assert "interrupted: finished work is kept in" in result.output
    assert "run the same command again to resume" in result.output
