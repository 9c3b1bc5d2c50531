"""Data-parallel training: 2 CPU processes (gloo, launched by torchrun) give the single-process result."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpe_bench import distributed

TOLERANCE = 1e-5
"""Max difference of any trained parameter: float summation order is the only difference left."""


def test_shards_cover_a_batch_once(monkeypatch):
    batch = list(range(7))
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, 3))
        shares.append(list(distributed.shard(batch)))
    assert shares == [[0, 1], [2, 3], [4, 5, 6]]


def test_a_single_process_drops_inherited_distributed_variables(monkeypatch):
    for name, value in {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "1", "MASTER_ADDR": "node7"}.items():
        monkeypatch.setenv(name, value)
    distributed.start()
    assert not {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"} & set(os.environ)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(runs: Path, backbone: Path, processes: int, method: list[str]) -> Path:
    args = [
        "run",
        "--backbone",
        str(backbone),
        "--budget",
        "smoke",
        "--max-steps",
        "8",
        "--seed",
        "1",
        *method,
    ]
    args += ["--sources", "eng_Latn,deu_Latn", "--targets", "eng_Latn,kat_Geor", "--runs-dir", str(runs)]
    if processes == 1:
        command = [sys.executable, "-m", "xpe_bench", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
        command += [f"--master_port={_free_port()}", "-m", "xpe_bench", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs.iterdir()
    return run


@pytest.mark.data
@pytest.mark.parametrize(
    "method",
    [["--method", "spt"], ["--method", "lora", "-o", "dropout=0"]],  # lora: a role of its own (adapter)
    ids=["spt", "lora"],
)
def test_two_processes_train_what_one_does(registry, cache_dir, tmp_path, method):
    from safetensors.torch import load_file

    # Without dropout the result is a function of the global batches alone (dropout masks are per process).
    backbone = tmp_path / "tiny-no-dropout"
    shutil.copytree(registry.backbones["tiny-random"].prepare(cache_dir), backbone)
    config = json.loads((backbone / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (backbone / "config.json").write_text(json.dumps(config))

    one, two = _run(tmp_path / "one", backbone, 1, method), _run(tmp_path / "two", backbone, 2, method)
    state_one, state_two = load_file(one / "state.safetensors"), load_file(two / "state.safetensors")
    assert state_one.keys() == state_two.keys()
    for name in state_one:
        assert float((state_one[name] - state_two[name]).abs().max()) < TOLERANCE, name
    for lang in ("eng_Latn", "kat_Geor"):
        rows = [
            [json.loads(line) for line in (run / "predictions" / f"{lang}.jsonl").open()]
            for run in (one, two)
        ]
        assert [r["pred"] for r in rows[0]] == [r["pred"] for r in rows[1]]
        np.testing.assert_allclose([r["scores"] for r in rows[0]], [r["scores"] for r in rows[1]], atol=1e-4)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["fit"]["steps_run"] == 8


@pytest.mark.parametrize("variable", ["RANK", "WORLD_SIZE"])
def test_a_job_step_with_world_size_one_runs_alone(variable, monkeypatch):
    monkeypatch.setenv(variable, "0" if variable == "RANK" else "1")
    distributed.start()
    assert distributed.world() == (0, 1) and distributed.is_main()
