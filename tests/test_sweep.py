"""Sweeps: expansion, identity and idempotency, debug and local launchers end to end (with a forced timeout
that requeues and resumes), and the SLURM script submitit generates (fake ``sbatch`` on PATH)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xpe_bench.cli import app
from xpe_bench.cli_sweep import _Collector
from xpe_bench.compact import read_compact
from xpe_bench.errors import UserInputError
from xpe_bench.runner import Runner
from xpe_bench.sweep import (
    Entry,
    PlannedRun,
    collect_newly_finished,
    job_state,
    live_jobs,
    load_sweep,
    pack,
    plan,
    process_start,
    submit,
)
from xpe_bench.sweep import Resources as SweepResources

cli = CliRunner()
SWEEP = """
name = "tiny"
runs_dir = "{runs}"
[fixed]
backbone = "tiny-random"
budget = "{budget}"
sources = "eng_Latn"
targets = "eng_Latn,kat_Geor"
[axes]
method = ["spt", "xpe"]
seed = [1, 2]
[[runs]]
method = "zero-shot"
seed = 1
"""
BUDGET = """
name = "sweep-test"
version = 1
train_per_lang = 16
dev_per_lang = 8
test_per_lang = 16
max_steps = 40
batch_size = 4
eval_batch_size = 16
max_length = 32
eval_every = 5
optimizer = "adamw"
learning_rates = { prompt = 1e-2, prompt_encoder = 1e-3, head = 1e-3, backbone = 3e-5 }
"""


def _sweep_file(folder: Path, runs: Path) -> Path:
    budget = folder / "sweep-test.toml"
    budget.write_text(BUDGET)
    path = folder / "tiny.toml"
    path.write_text(SWEEP.format(runs=runs, budget=budget))
    return path


def _outputs(runs: Path) -> dict[str, bytes]:
    return {
        f"{p.parent.parent.name}/{p.name}": p.read_bytes() for p in sorted(runs.glob("*/predictions/*.jsonl"))
    }


def test_expansion_validation_and_packing(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path, tmp_path / "runs"))
    assert len(sweep.entries) == 5
    assert sorted((e.values["method"], e.values["seed"]) for e in sweep.entries) == [
        ("spt", 1), ("spt", 2), ("xpe", 1), ("xpe", 2), ("zero-shot", 1)
    ]  # fmt: skip
    assert all(e.values["budget"].endswith("sweep-test.toml") for e in sweep.entries)
    assert len({e.id for e in sweep.entries}) == 5
    assert [len(chunk) for chunk in pack(sweep.entries, 2)] == [3, 2]
    assert [len(chunk) for chunk in pack(sweep.entries, 9)] == [1] * 5
    listed = [Entry({"method": m, "task": "t", "backbone": "b", "budget": "paper", "seed": 1}) for m in "zxa"]
    packed = [e.values["method"] for chunk in pack(listed, 1) for e in chunk]
    assert packed == ["z", "x", "a"]  # the file's order

    source = Entry({"method": "xpe", "task": "sib200", "backbone": "b", "budget": "paper", "seed": 1})
    target = Entry(dict(source.values) | {"regime": "supervised", "init_from": {}, "budget": "paper"})
    assert target.source_stage() == Entry(dict(source.values) | {"regime": "zero-shot-xlt"})
    chunks = pack([target, Entry(dict(source.values) | {"regime": "zero-shot-xlt"})], 2)
    assert len(chunks) == 1 and chunks[0][0].values["regime"] == "zero-shot-xlt"  # the source stage first

    bad = tmp_path / "bad.toml"
    for text, message in [
        ('name = "x"\n[axes]\nmethod = "spt"', "must be a non-empty list"),
        ('name = "x"\n[axes]\nmethods = ["spt"]', "unknown fields ['methods']"),
        ('name = "x"\n[axes]\nseed = ["one"]', "must be an integer"),
        ('name = "../x"\n[axes]\nseed = [1]', "must be letters"),
        ('name = "x"\n[[runs]]\nregime = "supervised"', "init_from"),
        ('name = "x"', "has no runs"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_sweep(bad)


@pytest.mark.data
def test_debug_sweep_end_to_end_and_resubmission_is_a_no_op(registry, tmp_path):
    runs = tmp_path / "runs"
    path = _sweep_file(tmp_path, runs)
    result = cli.invoke(app, ["sweep", "plan", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    overall = next(row for row in json.loads(result.stdout) if row["group"] == "all")
    assert overall["runs"] == 5 and overall["to run"] == 5
    unwaited = cli.invoke(app, ["sweep", "submit", str(path), "--collect", str(tmp_path / "early")])
    assert unwaited.exit_code == 2 and "--collect needs --wait" in unwaited.output
    (tmp_path / "a-file").write_text("")
    into_file = ["sweep", "submit", str(path), "--wait", "--collect", str(tmp_path / "a-file")]
    onto_file = cli.invoke(app, into_file)
    assert onto_file.exit_code == 2 and "is a file; give a folder" in onto_file.output
    assert not runs.exists() and not (tmp_path / "early").exists()  # refused before anything was written
    early = tmp_path / "early"
    result = cli.invoke(
        app, ["sweep", "submit", str(path), "--launcher", "debug", "--wait", "--collect", str(early)]
    )
    assert result.exit_code == 0, result.output
    assert "5 entries in 1 debug job" in result.output
    assert result.output.count("collected ") == 5 and len(list(early.glob("*.json.gz"))) == 5
    sweep = load_sweep(path)
    planned = plan(sweep, Runner(registry))
    assert {run.state for run in planned} == {"done"}
    # collected once only; a run with no record yet (one not started) is left for a later call
    collected_dirs = {run.run_dir for run in planned}
    assert collect_newly_finished(planned, tmp_path / "again", collected_dirs) == []
    not_started = PlannedRun(planned[0].entry, "to run", tmp_path / "runs" / "not-started")
    assert collect_newly_finished([not_started, planned[0]], tmp_path / "again", set()) == [
        tmp_path / "again" / f"{planned[0].run_dir.name}.json.gz"
    ]
    again = [
        "sweep",
        "submit",
        str(path),
        "--launcher",
        "debug",
        "--wait",
        "--collect",
        str(tmp_path / "late"),
    ]
    result = cli.invoke(app, again)
    assert result.exit_code == 0 and "nothing to submit" in result.output
    assert len(list((tmp_path / "late").glob("*.json.gz"))) == 5  # what finished earlier is collected too
    assert len(_outputs(runs)) == 10
    collected = cli.invoke(app, ["sweep", "collect", str(path), "--out", str(tmp_path / "compact")])
    assert collected.exit_code == 0 and "5 of 5 runs collected" in collected.output
    assert len(list((tmp_path / "compact").glob("*.json.gz"))) == 5
    for compact in (tmp_path / "compact").glob("*.json.gz"):  # the same bytes as collected while waiting
        assert compact.read_bytes() == (early / compact.name).read_bytes()


@pytest.mark.data
def test_submit_with_collect_skips_what_an_earlier_checkout_collected(registry, tmp_path):
    """A fresh clone has the committed compact results but none of the run directories: submitting with
    ``--collect`` into the folder that holds them runs only what is missing from it."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    path = _sweep_file(tmp_path, runs)
    submit_args = ["sweep", "submit", str(path), "--launcher", "debug", "--wait", "--collect", str(results)]
    assert cli.invoke(app, submit_args).exit_code == 0
    assert len(list(results.glob("*.json.gz"))) == 5
    shutil.rmtree(runs)  # the checkout is gone; the committed results stay

    def states(*extra: str) -> dict[str, int]:
        result = cli.invoke(app, ["sweep", "plan", str(path), "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        overall = next(row for row in json.loads(result.stdout) if row["group"] == "all")
        return {state: overall[state] for state in ("collected", "to run")}

    assert states() == {"collected": 0, "to run": 5}  # the plan alone does not know the folder
    assert states("--collected-in", str(results)) == {"collected": 5, "to run": 0}
    result = cli.invoke(app, submit_args)
    assert result.exit_code == 0 and "nothing to submit (every run is done, collected" in result.output
    assert not any(p.is_dir() and not p.name.startswith(".") for p in runs.glob("*"))  # nothing ran

    # a torn compact file is no result: that run (and only that one) runs again and is collected afresh
    torn = sorted(results.glob("*.json.gz"))[0]
    torn.write_bytes(torn.read_bytes()[:100])
    assert states("--collected-in", str(results)) == {"collected": 4, "to run": 1}
    result = cli.invoke(app, submit_args)
    assert result.exit_code == 0 and "1 entries in 1 debug job" in result.output, result.output
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [torn.name[: -len(".json.gz")]]
    assert read_compact(torn)["manifest"]["status"] == "complete"


@pytest.mark.data
def test_local_sweep_survives_a_forced_timeout(registry, tmp_path):
    reference = tmp_path / "reference"
    (tmp_path / "uninterrupted").mkdir()
    submit(
        load_sweep(_sweep_file(tmp_path / "uninterrupted", reference)),
        Runner(registry),
        launcher="debug",
        max_parallel=1,
        runs_per_job=1,
        resources=SweepResources(),
    )
    runs = tmp_path / "runs"
    path = _sweep_file(tmp_path, runs)
    result = cli.invoke(app, ["sweep", "submit", str(path), "--launcher", "local", "--time", "30"])
    assert result.exit_code == 0, result.output
    assert "5 entries in 1 local job" in result.output

    # The timeout signal (what SLURM or the local controller sends before the time limit), sent once the
    # first run has written a training checkpoint: the job checkpoints itself and is requeued.
    deadline = time.monotonic() + 240
    owner = None
    while time.monotonic() < deadline:
        checkpoints = list(runs.glob("*/fit/fit-checkpoint.safetensors"))
        owners = list(runs.glob("*/run.owner.json"))
        if checkpoints and owners:
            try:
                owner = json.loads(owners[0].read_text())["pid"]
                break
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    assert owner is not None, "the local job never started training"
    os.kill(owner, signal.SIGUSR2)

    sweep = load_sweep(path)
    while time.monotonic() < deadline:
        result = cli.invoke(app, ["sweep", "status", str(path), "--format", "json"])
        rows = json.loads(result.stdout)
        if all(row["state"] == "done" for row in rows) and all(r["job state"] == "FINISHED" for r in rows):
            break
        time.sleep(1)
    assert all(row["state"] == "done" for row in rows), rows
    (record,) = [json.loads(line) for line in (sweep.folder / "submissions.jsonl").open()]
    log = Path(record["stdout"]).read_text() + Path(record["stderr"]).read_text()
    assert "Requeued" in log, log[-2000:]
    assert "resuming the interrupted training from step" in log, log[-2000:]
    some_run = rows[0]["run"]
    logs = cli.invoke(app, ["sweep", "logs", str(path), some_run])
    assert logs.exit_code == 0 and f"{some_run}: complete" in logs.output
    assert _outputs(runs).keys() == _outputs(reference).keys()
    assert list(_outputs(runs).values()) == list(_outputs(reference).values())


@pytest.mark.data
def test_slurm_script_with_a_fake_sbatch(registry, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch-calls"
    calls.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(
        "#!/bin/sh\n"
        f'n=$(ls {calls} | wc -l); cp "$1" {calls}/script-$n.sh\n'
        'echo "Submitted batch job 424$n"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    for tool in ("srun", "scancel", "sacct"):  # submitit checks that it is on a SLURM cluster
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = _sweep_file(tmp_path, tmp_path / "runs")
    result = cli.invoke(
        app,
        [
            *("sweep", "submit", str(path), "--launcher", "slurm", "--runs-per-job", "1"),
            *("--max-array-size", "3", "--array-parallelism", "2", "--partition", "gpu", "--account", "nlp"),
            *("--gpus-per-job", "1", "--mem", "32G", "--time", "90", "--slurm-arg", "constraint=a100"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 entries in 5 slurm job(s)" in result.output
    scripts = sorted(calls.glob("script-*.sh"))
    assert len(scripts) == 2  # 5 array tasks, split at 3
    first, second = (script.read_text() for script in scripts)
    assert "#SBATCH --array=0-2%2" in first and "#SBATCH --array=0-1%2" in second
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=nlp",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32G",
        "#SBATCH --time=90",
        "#SBATCH --signal=USR2@90",
        "#SBATCH --constraint=a100",
    ):
        assert line in first, line
    sweep_folder = load_sweep(path).folder.resolve()
    assert f"#SBATCH --output={sweep_folder}/jobs/%A_%a/%A_%a_0_log.out" in first
    records = [json.loads(line) for line in (load_sweep(path).folder / "submissions.jsonl").open()]
    assert [r["job_id"] for r in records] == ["4240_0", "4240_1", "4240_2", "4241_0", "4241_1"]


STAGES = """
name = "stages"
runs_dir = "{runs}"
[fixed]
backbone = "tiny-random"
budget = "smoke"
[[runs]]
method = "spt"
sources = "eng_Latn"
targets = "eng_Latn"
[[runs]]
method = "spt"
regime = "supervised"
targets = "kat_Geor,yor_Latn"
init_from = {{ sources = "eng_Latn", targets = "eng_Latn" }}
"""


@pytest.mark.data
def test_a_supervised_entry_waits_for_its_source_stage(registry, tmp_path):
    path = tmp_path / "stages.toml"
    path.write_text(STAGES.format(runs=tmp_path / "runs"))
    sweep = load_sweep(path)
    source, target = sweep.entries
    assert target.source_stage() == source  # the same entry, defaults spelled out or not
    assert [run.state for run in plan(sweep, Runner(registry))] == ["to run", "blocked"]
    assert [len(chunk) for chunk in pack(sweep.entries, 2)] == [2]  # packed together, source first
    # a collector planned while the supervised entry was blocked (as --wait --collect with a background
    # launcher is) still collects the supervised runs, which had no run directory when it planned
    collector = _Collector(sweep, Runner(registry), tmp_path / "collected")

    result = cli.invoke(app, ["sweep", "submit", str(path), "--launcher", "debug"])
    assert result.exit_code == 0, result.output
    planned = plan(sweep, Runner(registry))
    assert [run.state for run in planned] == ["done", "done", "done"]  # the source, then one run per target
    names = sorted(run.run_dir.name for run in planned[1:])
    assert names[0].startswith("sib200-spt-tiny-random-smoke-supervised-kat_Geor-s1-")
    assert names[1].startswith("sib200-spt-tiny-random-smoke-supervised-yor_Latn-s1-")
    collector()  # within the re-planning interval: only the source stage's run has a directory yet
    assert len(list((tmp_path / "collected").glob("*.json.gz"))) == 1
    collector(final=True)
    assert sorted(p.name for p in (tmp_path / "collected").glob("*.json.gz")) == sorted(
        f"{run.run_dir.name}.json.gz" for run in planned
    )

    # a fresh checkout: the source stage runs again (its weights are what the supervised runs start from,
    # and no compact result holds them), the supervised runs it would start are collected already
    shutil.rmtree(tmp_path / "runs")
    replanned = plan(sweep, Runner(registry), tmp_path / "collected")
    assert [run.state for run in replanned] == ["to run", "blocked"]
    again = ["sweep", "submit", str(path), "--launcher", "debug", "--collect", str(tmp_path / "collected")]
    result = cli.invoke(app, [*again, "--wait"])
    assert result.exit_code == 0, result.output
    assert [run.state for run in plan(sweep, Runner(registry), tmp_path / "collected")] == [
        "done",
        "collected",
        "collected",
    ]
    assert [p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] == [
        planned[0].run_dir.name
    ]


def test_a_local_job_is_its_process_not_just_its_pid():
    """A pid outlives its process in submissions.jsonl (a reboot, a crashed controller) and may be reused:
    the recorded start time tells the job's own process from a later one with that pid."""
    me = {"launcher": "local", "job_id": str(os.getpid()), "process_start": process_start(os.getpid())}
    assert me["process_start"] is not None and job_state(me) == "RUNNING"
    assert job_state({**me, "process_start": me["process_start"] - 1}) == "FINISHED"  # a reused pid
    assert job_state({k: v for k, v in me.items() if k != "process_start"}) == "RUNNING"  # older records


@pytest.mark.data
def test_cancel_ends_a_live_local_job(registry, tmp_path):
    """A job far too long to finish by itself is stopped within seconds once its task is training, also
    when it was submitted by a process that ignores SIGINT (``nohup … &`` in a script does)."""
    path = _sweep_file(tmp_path, tmp_path / "runs")
    budget = tmp_path / "sweep-test.toml"
    budget.write_text(BUDGET.replace("max_steps = 40", "max_steps = 1000000"))
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = cli.invoke(app, ["sweep", "submit", str(path), "--launcher", "local"])
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (load_sweep(path).folder / "submissions.jsonl").open()]
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("*/run.lock")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first run holds its lock: the task is past submitit's start-up
        assert list((tmp_path / "runs").glob("*/run.lock")), "the job's first run never started"
        assert live_jobs(load_sweep(path)) == [record]
        # submitting again with --wait attaches to the live job (nothing new to submit) and returns only
        # once that job has ended: here when `sweep cancel`, run from another thread, ends it
        command = [sys.executable, "-m", "xpe_bench", "sweep", "cancel", str(path)]
        cancelled: list[subprocess.CompletedProcess[str]] = []
        timer = threading.Timer(
            3.0, lambda: cancelled.append(subprocess.run(command, capture_output=True, text=True))
        )
        timer.start()
        started = time.monotonic()
        attached = cli.invoke(app, ["sweep", "submit", str(path), "--launcher", "local", "--wait"])
        timer.join()
        message = " ".join(attached.output.split())
        assert attached.exit_code == 0 and f"held by a live job: {record['job_id']}" in message, message
        assert f"cancelled 1 job(s): {record['job_id']}" in cancelled[0].stdout, cancelled[0].stderr
        assert time.monotonic() - started >= 3.0
        assert job_state(record) == "FINISHED" and live_jobs(load_sweep(path)) == []
        assert not any(run.state == "done" for run in plan(load_sweep(path), Runner(registry)))
        assert "cancelled 0 job(s)" in cli.invoke(app, ["sweep", "cancel", str(path)]).output
    finally:  # never leave a million-step job behind, whatever failed above
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(record["job_id"]), signal.SIGKILL)  # the controller leads its own session
