"""``kill -9`` a real ``xpe-bench run`` at a few points; the rerun resumes to byte-identical results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xpe_bench.training import CHECKPOINT_NAME

pytestmark = pytest.mark.data  # the built-in tasks' real data

XPE_BENCH = str(Path(sys.executable).with_name("xpe-bench"))
BUDGET = """
name = "kill-test"
version = 1
train_per_lang = 16
dev_per_lang = 8
test_per_lang = 32
max_steps = 30
batch_size = 4
eval_batch_size = 16
max_length = 32
eval_every = 5
optimizer = "adamw"
learning_rates = { prompt = 1e-2, prompt_encoder = 1e-3, head = 1e-3, backbone = 3e-5 }
schedule = "linear"
"""
TARGETS = "eng_Latn,kat_Geor,yor_Latn,swh_Latn,deu_Latn,fra_Latn,zho_Hans,arb_Arab"


def _command(runs: Path, budget: Path) -> list[str]:
    languages = ["--sources", "eng_Latn,deu_Latn", "--targets", TARGETS]
    return [XPE_BENCH, "run", "--backbone", "tiny-random", "--budget", str(budget), "--seed", "3", *languages,
            "--runs-dir", str(runs)]  # fmt: skip


def _results(runs: Path) -> dict[str, bytes]:
    """Predictions and trained tensors of the one run in ``runs`` (bytes), and its final status."""
    from safetensors.torch import load_file

    (path,) = runs.iterdir()
    state = load_file(path / "state.safetensors")
    files = {p.name: p.read_bytes() for p in sorted((path / "predictions").glob("*.jsonl"))}
    files |= {name: tensor.numpy().tobytes() for name, tensor in sorted(state.items())}
    files["metrics.json"] = (path / "metrics.json").read_bytes()
    return files


def _kill_when(runs: Path, budget: Path, ready, env: dict[str, str]) -> None:
    process = subprocess.Popen(
        _command(runs, budget), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if process.poll() is not None:
        pytest.fail("the run finished before the kill point was reached: make the run longer")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _run_dir(runs: Path) -> Path | None:
    found = list(runs.glob("*/manifest.json")) if runs.exists() else []
    return found[0].parent if found else None


def _checkpoint_exists(runs: Path) -> bool:
    path = _run_dir(runs)
    return path is not None and (path / "fit" / CHECKPOINT_NAME).exists()


def _predicted(runs: Path, n: int) -> bool:
    path = _run_dir(runs)
    return path is not None and len(list((path / "predictions").glob("*.jsonl"))) >= n


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> tuple[Path, Path]:
    """The budget file and the runs folder of one run that nobody killed."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    budget = folder / "kill-test.toml"
    budget.write_text(BUDGET)
    env = dict(os.environ, XPE_BENCH_CACHE=str(cache_dir))
    subprocess.run(_command(folder / "runs", budget), env=env, check=True, capture_output=True)
    return budget, folder / "runs"


@pytest.mark.parametrize(
    "point",
    ["during training, after a checkpoint", "during evaluation, after some predictions"],
)
def test_killed_run_resumes_to_identical_results(tmp_path, uninterrupted, point):
    env = dict(os.environ)
    budget, reference = uninterrupted
    runs = tmp_path / "killed"
    ready = (lambda: _checkpoint_exists(runs)) if "training" in point else (lambda: _predicted(runs, 2))
    _kill_when(runs, budget, ready, env)
    manifest = (_run_dir(runs) / "manifest.json").read_text()
    assert '"status": "complete"' not in manifest
    rerun = subprocess.run(_command(runs, budget), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    if "training" in point:
        assert "resuming the interrupted training from step" in rerun.stdout
    else:
        assert "reused stored predictions" in rerun.stdout
    assert _results(runs) == _results(reference)
