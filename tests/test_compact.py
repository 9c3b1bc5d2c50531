"""Compact run files: small, deterministic, and faithful to the run they copy."""

from __future__ import annotations

import gzip

import pytest

from xpe_bench.budgets import load_budget
from xpe_bench.compact import export_run, read_compact
from xpe_bench.comparison import load_run
from xpe_bench.errors import UserInputError
from xpe_bench.runner import Runner, RunRequest

pytestmark = pytest.mark.usefixtures("mock_task")


@pytest.fixture
def finished_run(registry, tmp_path):
    request = RunRequest(
        task="mock",
        method="spt",
        budget=load_budget("smoke"),
        seed=1,
        runs_dir=tmp_path / "runs",
        backbone="tiny-random",
        sources="aaa_Latn",
        targets="aaa_Latn,ccc_Cyrl,bbb_Latn",
    )
    (outcome,) = Runner(registry).execute(request)
    return outcome.store


def test_export_is_deterministic_and_roundtrips(finished_run, tmp_path):
    first = export_run(finished_run.path, tmp_path / "a")
    second = export_run(finished_run.path, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    payload = read_compact(first)
    record = finished_run.read_record()
    assert record is not None and payload["manifest"] == record.to_dict()
    assert set(payload["predictions"]) == {"aaa_Latn", "ccc_Cyrl", "bbb_Latn"}

    from_compact, from_directory = load_run(first), load_run(finished_run.path)
    assert from_compact.record == from_directory.record == record
    assert from_compact.predictions.keys() == from_directory.predictions.keys()
    for lang, items in from_directory.predictions.items():
        restored = from_compact.predictions[lang]
        assert restored.ids == items.ids, lang
        assert (restored.gold == items.gold).all() and (restored.pred == items.pred).all(), lang


def test_unfinished_or_foreign_files_are_rejected(finished_run, tmp_path):
    with pytest.raises(UserInputError, match="not a finished run"):
        export_run(tmp_path, tmp_path / "out")
    bogus = tmp_path / "bogus.json.gz"
    bogus.write_bytes(gzip.compress(b'{"format": "other"}'))
    with pytest.raises(UserInputError, match="unknown compact format"):
        read_compact(bogus)
    # a file cut short (a copy interrupted) or damaged inside the stream is refused in one line, not a crash
    torn = tmp_path / "torn.json.gz"
    torn.write_bytes(export_run(finished_run.path, tmp_path / "whole").read_bytes()[:200])
    with pytest.raises(UserInputError, match="is not a compact run file"):
        read_compact(torn)
    damaged = bytearray(gzip.compress(b'{"format": "xpe-bench-compact/1"}' * 50))
    damaged[20:30] = b"\xff" * 10
    torn.write_bytes(bytes(damaged))
    with pytest.raises(UserInputError, match="is not a compact run file"):
        read_compact(torn)
