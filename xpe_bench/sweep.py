"""Sweeps: many run configurations from one TOML file, executed through submitit (debug, local or SLURM).

A sweep file holds fixed settings, axes whose product is the grid, and optional extra runs::

    name = "sib200-joshi5"
    runs_dir = "runs/sib200-joshi5"
    [fixed]
    task = "sib200"
    sources = "joshi5"
    targets = "all"
    budget = "quick"
    [axes]
    method = ["spt", "xpe"]
    seed = [1, 2, 3]
    [[runs]]                       # outside the grid; merged over [fixed]
    method = "zero-shot"
    seed = 1

A run's identity is the content hash the runner computes (:meth:`xpe_bench.runner.Runner.prepare`), so the
plan knows, from the run directories alone, what is done, what a live process holds (its lock), what failed
and what is left; submitting a sweep again submits only what is left. A ``supervised`` entry names its
source-stage run with ``init_from = {…}`` (fields that differ from the entry, e.g. ``{regime =
"zero-shot-xlt", sources = "joshi5"}``); it is blocked until that run is finished, and is packed into the same
job, after it, when both are submitted together.

The job payload is a :class:`SweepJob` that submitit pickles into the sweep folder (that is how submitit
works): keep the sweep folder private (it is created mode 0700). Nothing of the results travels that way:
status and collection read the run directories (JSON and safetensors).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xpe_bench import distributed
from xpe_bench.errors import UserInputError

ENTRY_FIELDS = {
    "task": str,
    "method": str,
    "backbone": str,
    "sources": str,
    "targets": str,
    "budget": str,
    "seed": int,
    "regime": str,
    "options": dict,
    "data_dir": str,
    "init_from": dict,
    "init_parts": str,
}
"""What a sweep entry may set (the fields of a run request), with their TOML types."""
DEFAULTS: Mapping[str, Any] = {
    "task": "sib200",
    "method": "spt",
    "backbone": "me5-small",
    "budget": "quick",
    "seed": 1,
    "regime": "zero-shot-xlt",
}
"""What an entry that does not say gets (as ``xpe-bench run`` would); spelled out, so that an entry and the
source stage a supervised entry names are the same entry whether or not they repeat a default."""
LAUNCHERS = ("debug", "local", "slurm")
SUBMISSIONS = "submissions.jsonl"
JOBS = "jobs"


@dataclass(frozen=True)
class Entry:
    """One configuration of the sweep: a run request in plain values (what a job receives)."""

    values: Mapping[str, Any]

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.values, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        v = self.values
        options = ",".join(f"{k}={val}" for k, val in sorted(v.get("options", {}).items()))
        text = f"{v['method']}{f'[{options}]' if options else ''} {v['task']} s{v.get('seed', 1)}"
        return text + (f" {v['regime']}" if v.get("regime", "zero-shot-xlt") != "zero-shot-xlt" else "")

    def source_stage(self) -> Entry | None:
        """The entry of the run a ``supervised`` entry starts from."""
        init = self.values.get("init_from")
        if init is None:
            return None
        values = {k: v for k, v in self.values.items() if k not in {"init_from", "init_parts"}}
        values |= {"regime": "zero-shot-xlt"} | dict(init)
        return Entry(values)


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    runs_dir: Path
    entries: tuple[Entry, ...]
    description: str = ""

    @property
    def folder(self) -> Path:
        """Where the sweep keeps its submissions and job logs (beside the runs, on the same storage)."""
        return self.runs_dir / ".sweeps" / self.name


def _check_entry(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = set(values) - set(ENTRY_FIELDS)
    if unknown:
        raise UserInputError(f"{where}: unknown fields {sorted(unknown)}; valid: {sorted(ENTRY_FIELDS)}")
    for key, value in values.items():
        kind = ENTRY_FIELDS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserInputError(f"{where}: {key} = {value!r} must be an integer")
        if kind is not int and not isinstance(value, kind):
            raise UserInputError(f"{where}: {key} = {value!r} must be a {kind.__name__}")
    if "init_from" in values and values.get("regime") != "supervised":
        raise UserInputError(f"{where}: init_from is only used with regime = 'supervised'")
    if values.get("regime") == "supervised" and "init_from" not in values:
        raise UserInputError(f"{where}: a supervised entry names its source-stage run with init_from = {{…}}")
    return DEFAULTS | dict(values)


def load_sweep(path: Path) -> Sweep:
    """Read and expand a sweep file; every problem is a one-line :class:`UserInputError` naming it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserInputError(f"sweep file {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path} is not valid TOML: {exc}") from exc
    known = {"name", "description", "runs_dir", "fixed", "axes", "runs"}
    if set(raw) - known:
        raise UserInputError(f"{path}: unknown keys {sorted(set(raw) - known)}; valid: {sorted(known)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UserInputError(f"{path}: name = {name!r} must be letters, digits, '-', '_' or '.'")
    fixed = raw.get("fixed", {})
    axes = raw.get("axes", {})
    if not isinstance(fixed, dict) or not isinstance(axes, dict):
        raise UserInputError(f"{path}: [fixed] and [axes] are tables")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise UserInputError(f"{path}: axes.{key} must be a non-empty list")
    entries: list[Entry] = []
    if axes:
        keys = list(axes)
        for combination in itertools.product(*(axes[k] for k in keys)):
            values = fixed | dict(zip(keys, combination, strict=True))
            entries.append(
                Entry(_check_entry(values, f"{path} [axes] {dict(zip(keys, combination, strict=True))}"))
            )
    for i, extra in enumerate(raw.get("runs", [])):
        entries.append(Entry(_check_entry(fixed | extra, f"{path} [[runs]] #{i + 1}")))
    if not entries:
        raise UserInputError(f"{path}: the sweep has no runs (give [axes] or [[runs]])")
    unique = list({entry.id: entry for entry in entries}.values())
    runs_dir = Path(raw.get("runs_dir", "runs"))
    return Sweep(name, path, runs_dir, tuple(unique), str(raw.get("description", "")))


# planning -------------------------------------------------------------------------------------------------
@dataclass
class PlannedRun:
    entry: Entry
    state: str
    """``done``, ``collected`` (its compact result is in the collection folder, its run directory absent),
    ``running`` (a live process holds it), ``partial`` (interrupted), ``to run``, ``failed``, ``blocked`` (its
    source-stage run is not finished) or ``unreadable``."""
    run_dir: Path | None
    detail: str = ""


def _request(entry: Entry, runs_dir: Path, init_from: Path | None) -> Any:
    from xpe_bench.budgets import load_budget
    from xpe_bench.runner import RunRequest

    v = entry.values
    return RunRequest(
        task=v["task"],
        method=v["method"],
        budget=load_budget(v["budget"]),
        seed=v.get("seed", 1),
        runs_dir=runs_dir,
        backbone=v["backbone"],
        sources=v.get("sources"),
        targets=v.get("targets"),
        data_dir=Path(v["data_dir"]) if "data_dir" in v else None,
        options=dict(v.get("options", {})),
        regime=v.get("regime", "zero-shot-xlt"),
        init_from=init_from,
        init_parts=v.get("init_parts", "auto"),
    )


_STATE_OF_STATUS = {
    "absent": "to run",
    "created": "partial",
    "training": "partial",
    "trained": "partial",
    "evaluating": "partial",
    "complete": "done",
    "failed": "failed",
    "unreadable": "unreadable",
    "foreign": "unreadable",
}


def prepare_entry(runner: Any, entry: Entry, runs_dir: Path) -> list[Any] | str:
    """The entry's prepared runs, or why it is blocked (a supervised entry whose source is not finished)."""
    init_from = None
    source = entry.source_stage()
    if source is not None:
        (stage,) = runner.prepare(_request(source, runs_dir, None))
        if stage.status != "complete":
            return f"waits for its source-stage run {stage.store.path.name} ({stage.status})"
        init_from = stage.store.path
    return runner.prepare(_request(entry, runs_dir, init_from))


def collected_result(collected_in: Path | None, run_dir: Path) -> Path | None:
    """The finished run's compact result in ``collected_in`` (``<run-name>.json.gz``), if one is there.

    The run directory's name ends in the hash of the run's whole configuration, so a compact file of that
    name is this run's result; it counts only if it reads as a compact file of a complete run (a torn or
    foreign file is ignored and the run is run)."""
    from xpe_bench.compact import SUFFIX, read_compact

    if collected_in is None:
        return None
    path = collected_in / f"{run_dir.name}{SUFFIX}"
    if not path.is_file():
        return None
    try:
        payload = read_compact(path)
    except UserInputError:
        return None
    manifest = payload.get("manifest")
    return path if isinstance(manifest, Mapping) and manifest.get("status") == "complete" else None


def _source_stage_ids(entries: Iterable[Entry]) -> set[str]:
    """Entries another entry starts from: they run wherever that one runs, since only their run directory,
    not a compact result, holds the trained weights it starts from."""
    return {source.id for entry in entries if (source := entry.source_stage()) is not None}


def _collected_instead(
    entry: Entry, run: Any, collected_in: Path | None, source_stages: set[str]
) -> Path | None:
    """The compact result standing in for a prepared run not started here (the plan's and the job's rule)."""
    if run.status != "absent" or entry.id in source_stages:
        return None
    return collected_result(collected_in, run.store.path)


def plan(sweep: Sweep, runner: Any, collected_in: Path | None = None) -> list[PlannedRun]:
    """Where every run of the sweep stands, from its run directory (nothing is written).

    With ``collected_in`` (the folder ``submit --collect`` fills), a run with no run directory whose compact
    result is in that folder is ``collected``: finished elsewhere, such as in an earlier checkout whose
    uncommitted run directories are gone, so it is not run again."""
    planned = []
    source_stages = _source_stage_ids(sweep.entries)
    for entry in sweep.entries:
        prepared = prepare_entry(runner, entry, sweep.runs_dir)
        if isinstance(prepared, str):
            planned.append(PlannedRun(entry, "blocked", None, prepared))
            continue
        for run in prepared:
            state = _STATE_OF_STATUS[run.status]
            if state in {"partial", "to run"} and run.store.is_locked():
                state = "running"
            elif (result := _collected_instead(entry, run, collected_in, source_stages)) is not None:
                planned.append(PlannedRun(entry, "collected", run.store.path, str(result)))
                continue
            planned.append(PlannedRun(entry, state, run.store.path))
    return planned


def summarize(
    planned: Sequence[PlannedRun], axes: Iterable[str] = ("method", "seed")
) -> list[dict[str, Any]]:
    """Counts of run states per value of each axis, and overall (the plan's table)."""
    states = ["done", "collected", "running", "partial", "to run", "blocked", "failed", "unreadable"]
    rows = []
    for axis in [*axes, None]:
        groups: dict[str, list[PlannedRun]] = {}
        for run in planned:
            label = "all" if axis is None else f"{axis}={run.entry.values.get(axis, '-')}"
            groups.setdefault(label, []).append(run)
        for label, runs in groups.items():
            counts = {state: sum(run.state == state for run in runs) for state in states}
            rows.append({"group": label, "runs": len(runs), **counts})
    return rows


# packing --------------------------------------------------------------------------------------------------
def pack(entries: Sequence[Entry], chunks: int) -> list[list[Entry]]:
    """Split entries into at most ``chunks`` jobs: a supervised entry stays with its source-stage entry (after
    it); entries on one backbone share a job where they can (the backbone loads once per job). Otherwise the
    sweep file's order is kept, so a file can list first what an interrupted sweep should have finished."""
    ids = {entry.id for entry in entries}
    groups: dict[str, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: e.source_stage() is not None):  # source stages first
        source = entry.source_stage()
        anchor = source.id if source is not None and source.id in ids else entry.id
        groups.setdefault(anchor, []).append(entry)
    ordered = sorted(groups.values(), key=lambda group: group[0].values["backbone"])  # stable
    chunks = max(1, min(chunks, len(ordered)))
    size = math.ceil(len(ordered) / chunks)
    return [[e for group in ordered[i : i + size] for e in group] for i in range(0, len(ordered), size)]


# execution ------------------------------------------------------------------------------------------------
class SweepJob:
    """What one submitit job runs: its entries, in order, skipping what is done or held by a live process.

    Requeued on timeout or preemption (submitit calls :meth:`checkpoint`): the new attempt skips the finished
    runs and resumes the interrupted one from its last evaluation checkpoint.
    """

    def __init__(
        self, runs_dir: str, entries: Sequence[Mapping[str, Any]], collected_in: str | None = None
    ) -> None:
        self.runs_dir = runs_dir
        self.entries = [dict(values) for values in entries]
        self.collected_in = collected_in

    def __call__(self) -> dict[str, int]:
        from xpe_bench.errors import RunFailed
        from xpe_bench.plugins import load_registry
        from xpe_bench.report import LineProgress
        from xpe_bench.runner import Reporters, Runner
        from xpe_bench.store import RunLocked

        distributed.start()  # a multi-process job joins its group; a single one drops inherited variables
        out = LineProgress(sys.stdout)
        runner = Runner(
            load_registry(), Reporters(train=out, evaluate=LineProgress(sys.stdout), note=out.note)
        )
        counts = {"done": 0, "collected": 0, "ran": 0, "skipped": 0, "failed": 0, "blocked": 0}
        collected_in = None if self.collected_in is None else Path(self.collected_in)
        source_stages = _source_stage_ids(Entry(values) for values in self.entries)
        for values in self.entries:
            entry = Entry(values)
            prepared = prepare_entry(runner, entry, Path(self.runs_dir))
            if isinstance(prepared, str):
                out.note(f"{entry.describe()}: blocked, {prepared}")
                counts["blocked"] += 1
                continue
            for run in prepared:
                name = run.store.path.name
                if run.status == "complete":
                    out.note(f"{name}: done already")
                    counts["done"] += 1
                    continue
                if (result := _collected_instead(entry, run, collected_in, source_stages)) is not None:
                    out.note(f"{name}: collected already ({result})")
                    counts["collected"] += 1
                    continue
                out.note(f"{name}: {'resuming' if run.status != 'absent' else 'starting'}")
                try:
                    runner.run_prepared(run)
                except RunLocked as exc:
                    out.note(f"{name}: skipped, {exc}")
                    counts["skipped"] += 1
                except (RunFailed, UserInputError) as exc:
                    out.note(f"{name}: failed, {exc}")
                    counts["failed"] += 1
                else:
                    out.note(f"{name}: complete")
                    counts["ran"] += 1
        return counts

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(self.runs_dir, self.entries, self.collected_in))


@dataclass
class Resources:
    """What each job asks the launcher for (SLURM's flags; ``time_min`` is also the local timeout)."""

    time_min: float = 240
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_job: int = 0
    cpus_per_task: int | None = None
    mem: str | None = None
    array_parallelism: int = 256
    max_array_size: int = 1000
    signal_delay_s: int = 90
    extra: dict[str, str] = field(default_factory=dict)


def _executor(launcher: str, folder: Path, resources: Resources) -> Any:
    import submitit

    if launcher == "debug":
        return submitit.DebugExecutor(folder=str(folder / JOBS / "%j"))
    if launcher == "local":
        executor = submitit.LocalExecutor(folder=str(folder / JOBS / "%j"), max_num_timeout=10)
        executor.update_parameters(
            timeout_min=resources.time_min,
            signal_delay_s=min(resources.signal_delay_s, int(resources.time_min * 60 // 2)),
            gpus_per_node=resources.gpus_per_job,
        )
        return executor
    executor = submitit.SlurmExecutor(folder=str(folder / JOBS / "%j"), max_num_timeout=10)
    parameters: dict[str, Any] = {
        "time": math.ceil(resources.time_min),
        "array_parallelism": resources.array_parallelism,
        "signal_delay_s": resources.signal_delay_s,
        "job_name": f"xpe-bench-{folder.name}",
    }
    optional = {
        "partition": resources.partition,
        "account": resources.account,
        "qos": resources.qos,
        "cpus_per_task": resources.cpus_per_task,
        "mem": resources.mem,
        "gpus_per_node": resources.gpus_per_job or None,
    }
    parameters |= {k: v for k, v in optional.items() if v is not None}
    if resources.extra:
        parameters["additional_parameters"] = dict(resources.extra)
    executor.update_parameters(**parameters)
    return executor


def submit(
    sweep: Sweep,
    runner: Any,
    *,
    launcher: str,
    max_parallel: int,
    runs_per_job: int,
    resources: Resources,
    collected_in: Path | None = None,
) -> list[dict[str, Any]]:
    """Submit every run that is not done (nor held by a live job); returns the submission records.

    ``debug`` runs the jobs here and now; ``local`` and ``slurm`` return as soon as the jobs are queued.
    Local jobs are ``max_parallel`` processes, each working through its share; SLURM jobs hold
    ``runs_per_job`` entries each, in arrays of at most ``max_array_size`` tasks with ``%array_parallelism``.
    With ``collected_in``, a run whose compact result is already there counts as done (see :func:`plan`), in
    the plan and in the jobs.
    """
    if launcher not in LAUNCHERS:
        raise UserInputError(f"--launcher: {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    folder = sweep.folder.resolve()
    planned = plan(sweep, runner, collected_in)
    collected = None if collected_in is None else str(collected_in.resolve())
    # entries still queued in a live job (not started, so not locked yet) are that job's, not to submit again
    held = {entry_id for record in live_jobs(sweep) for entry_id in record["entries"]}
    wanted = {
        run.entry.id: run.entry
        for run in planned
        if run.state in {"to run", "partial", "blocked"} and run.entry.id not in held
    }
    # blocked entries go along only when their source-stage run is submitted with them
    entries = [
        e
        for e in wanted.values()
        if e.source_stage() is None or e.source_stage().id in wanted  # type: ignore[union-attr]
    ]
    if not entries:
        return []
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    chunks = pack(
        entries, max_parallel if launcher != "slurm" else math.ceil(len(entries) / max(1, runs_per_job))
    )
    executor = _executor(launcher, folder, resources)
    runs_dir = str(sweep.runs_dir.resolve())
    records = []
    for start in range(0, len(chunks), resources.max_array_size if launcher == "slurm" else len(chunks)):
        batch = chunks[start : start + resources.max_array_size]
        jobs = []
        if launcher == "slurm":
            with executor.batch():
                jobs = [
                    executor.submit(SweepJob(runs_dir, [e.values for e in chunk], collected))
                    for chunk in batch
                ]
        elif launcher == "local":
            with _detached_controllers(folder / "controllers.log"):
                jobs = [
                    executor.submit(SweepJob(runs_dir, [e.values for e in chunk], collected))
                    for chunk in batch
                ]
        else:
            jobs = [
                executor.submit(SweepJob(runs_dir, [e.values for e in chunk], collected)) for chunk in batch
            ]
        for job, chunk in zip(jobs, batch, strict=True):
            records.append(
                {
                    "submitted": datetime.now(UTC).isoformat(timespec="seconds"),
                    "launcher": launcher,
                    "job_id": str(job.job_id),
                    "entries": [entry.id for entry in chunk],
                    "stdout": str(job.paths.stdout),
                    "stderr": str(job.paths.stderr),
                }
            )
            if launcher == "local":
                records[-1]["process_start"] = process_start(int(job.job_id))
        if launcher == "debug":  # in-process: run now (and let exceptions surface, as a debugger wants)
            for job in jobs:
                job.result()
    with (folder / SUBMISSIONS).open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return records


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def _detached_controllers(log: Path) -> Iterator[None]:
    """Start submitit's local job controllers in a session of their own, writing to ``log``.

    submitit starts a local controller with the submitting process's terminal as its output and in its
    process group: a pipe (``submit | tee``) would stay open until the jobs end, and closing the terminal or
    Ctrl-C would end the jobs too. Local jobs are meant to outlive ``submit``, like SLURM's.

    SIGINT is reset to its default in the controller: ``sweep cancel`` stops a local job with it (as
    submitit's own cancel does), and a process started in the background of a non-interactive shell
    (``nohup xpe-bench sweep submit … &``, the way a long sweep is left running) ignores SIGINT and would
    pass that on to the controller and its tasks, which then could not be cancelled.
    """
    import submitit.local.local as local

    handle = log.open("a", encoding="utf-8")
    detached = functools.partial(
        subprocess.Popen,
        start_new_session=True,
        preexec_fn=_default_sigint,
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=handle,
    )

    class _Subprocess:  # submitit's module sees this instead of `subprocess` (and nothing else does)
        Popen = detached

        def __getattr__(self, name: str) -> Any:
            return getattr(subprocess, name)

    original = local.subprocess
    local.subprocess = _Subprocess()  # type: ignore[assignment]
    try:
        yield
    finally:
        local.subprocess = original
        handle.close()


def node_local(path: Path) -> bool:
    """Whether ``path`` is on storage private to one node on most clusters (``/tmp``, ``/var/tmp``)."""
    parts = path.resolve().parts
    return parts[:2] == ("/", "tmp") or parts[:3] == ("/", "var", "tmp")


def submissions(sweep: Sweep) -> list[dict[str, Any]]:
    path = sweep.folder / SUBMISSIONS
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    return records


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat``, field 22), or ``None``
    where there is no such process or no ``/proc``. With the pid it names one process for good: a pid
    alone may have been reused after a reboot or a crash of the controller."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at field 3


def _process_alive(pid: int, started: int | None = None) -> bool:
    """Whether a local job's controller still runs (and, when its start time was recorded, is that very
    process). One this process started (``submit --wait``, tests) is reaped here once it has exited: an
    unreaped child would look alive forever."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: submitted by an earlier command
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or process_start(pid) in (started, None)


def job_state(record: Mapping[str, Any]) -> str:
    """The engine's state of a submitted job: SLURM's (``sacct``), or a local process's liveness."""
    if record["launcher"] == "debug":
        return "FINISHED"
    if record["launcher"] == "local":
        alive = _process_alive(int(record["job_id"]), record.get("process_start"))
        return "RUNNING" if alive else "FINISHED"
    import submitit

    folder = Path(record["stdout"]).parent
    return str(submitit.SlurmJob(folder=folder, job_id=record["job_id"]).state)


def latest_jobs(sweep: Sweep) -> dict[str, dict[str, Any]]:
    """Entry id -> the newest submission record that holds it."""
    latest: dict[str, dict[str, Any]] = {}
    for record in submissions(sweep):
        for entry_id in record["entries"]:
            latest[entry_id] = record
    return latest


LIVE_STATES = frozenset({"RUNNING", "PENDING", "REQUEUED", "SUSPENDED", "CONFIGURING", "COMPLETING"})
"""Job states (SLURM's, or ``RUNNING`` for a live local process) of a job that may still work on runs."""


def live_jobs(sweep: Sweep) -> list[dict[str, Any]]:
    """The submission records of the sweep's jobs that are still alive (one per job)."""
    records = {r["job_id"]: r for r in latest_jobs(sweep).values()}.values()
    return [record for record in records if job_state(record) in LIVE_STATES]


def cancel(sweep: Sweep) -> list[str]:
    """Cancel every submitted job that is still alive; returns their ids."""
    cancelled = []
    for record in live_jobs(sweep):
        if record["launcher"] == "local":
            # SIGINT, as submitit's own LocalJob.cancel: the controller stops its tasks (SIGINT, then SIGKILL
            # after a second). SIGTERM would only be forwarded, and submitit's tasks ignore SIGTERM.
            os.kill(int(record["job_id"]), signal.SIGINT)
        else:
            import submitit

            submitit.SlurmJob(folder=Path(record["stdout"]).parent, job_id=record["job_id"]).cancel()
        cancelled.append(record["job_id"])
    return cancelled


def collect(planned: Sequence[PlannedRun], out_dir: Path) -> list[Path]:
    """Compact copies of the finished runs, for ``leaderboard`` and the repository."""
    return collect_newly_finished(planned, out_dir, set())


def collect_newly_finished(planned: Sequence[PlannedRun], out_dir: Path, collected: set[Path]) -> list[Path]:
    """Compact copies of the planned runs that are complete now and not in ``collected`` (which gains them).

    What ``submit --wait --collect`` calls while it waits: each run's result reaches ``out_dir`` (ready to
    commit) as soon as it finishes, not when the whole sweep has, so a session that ends mid-sweep loses
    nothing finished. Reads each run's record afresh; a record being replaced or unreadable just now is
    left for the next call."""
    from xpe_bench.compact import export_run
    from xpe_bench.errors import CorruptRunFile
    from xpe_bench.store import RunStore

    written = []
    for run in planned:
        if run.run_dir is None or run.run_dir in collected:
            continue
        try:
            record = RunStore(run.run_dir).read_record()
        except (OSError, CorruptRunFile):
            continue
        if record is not None and record.status == "complete":
            written.append(export_run(run.run_dir, out_dir))
            collected.add(run.run_dir)
    return written
