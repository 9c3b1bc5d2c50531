"""The ``sweep`` commands: plan, submit, status, logs, cancel, collect (see ``docs/scale.md``).

Registered on the ``xpe-bench`` app when imported; the work is done by :mod:`xpe_bench.sweep`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from xpe_bench.cli_app import FormatOption, OutputFormat, app, console, parse_key_values, user_errors
from xpe_bench.errors import UserInputError

sweep_app = typer.Typer(help="Run many configurations from a sweep file on submitit (debug, local, SLURM).")
app.add_typer(sweep_app, name="sweep")

SweepFile = Annotated[Path, typer.Argument(help="the sweep file (TOML)")]


def _plan(path: Path, collected_in: Path | None = None) -> tuple[Any, list[Any]]:
    from xpe_bench.plugins import load_registry
    from xpe_bench.runner import Runner
    from xpe_bench.sweep import load_sweep, plan

    sweep = load_sweep(path)
    return sweep, plan(sweep, Runner(load_registry()), collected_in)


def _check_collection_folder(option: str, folder: Path | None) -> None:
    if folder is not None and folder.exists() and not folder.is_dir():
        raise UserInputError(f"{option}: {folder} is a file; give a folder for the compact results")


@sweep_app.command("plan")
@user_errors
def plan_command(
    path: SweepFile,
    fmt: FormatOption = OutputFormat.table,
    collected_in: Annotated[
        Path | None,
        typer.Option(
            help="count runs whose compact result is in this folder as collected (submit --collect)"
        ),
    ] = None,
) -> None:
    """Dry run: what is done, running, blocked or left to run, per axis (nothing is written)."""
    from xpe_bench.report import emit
    from xpe_bench.sweep import summarize

    _check_collection_folder("--collected-in", collected_in)
    sweep, planned = _plan(path, collected_in)
    rows = summarize(planned)
    states = ["done", "collected", "running", "partial", "to run", "blocked", "failed", "unreadable"]
    shown = [state for state in states if any(row[state] for row in rows)]  # the table omits empty states
    emit(console, rows, fmt, f"sweep {sweep.name}: {len(planned)} runs", ["group", "runs", *shown])


@sweep_app.command("submit")
@user_errors
def submit_command(
    path: SweepFile,
    launcher: Annotated[str, typer.Option(help="debug (in this process), local or slurm")] = "local",
    max_parallel: Annotated[int, typer.Option(help="local: jobs at once (each works through its share)")] = 1,
    runs_per_job: Annotated[int, typer.Option(help="slurm: runs packed into one array task")] = 1,
    array_parallelism: Annotated[int, typer.Option(help="slurm: array tasks at once (%N)")] = 256,
    max_array_size: Annotated[int, typer.Option(help="slurm: split arrays above this size")] = 1000,
    partition: Annotated[str | None, typer.Option(help="slurm partition")] = None,
    account: Annotated[str | None, typer.Option(help="slurm account")] = None,
    qos: Annotated[str | None, typer.Option(help="slurm QOS")] = None,
    gpus_per_job: Annotated[int, typer.Option(help="GPUs per job")] = 0,
    cpus_per_task: Annotated[int | None, typer.Option(help="CPUs per task")] = None,
    mem: Annotated[str | None, typer.Option(help="memory per job, e.g. 32G")] = None,
    time: Annotated[float, typer.Option(help="minutes per job before it is requeued")] = 240.0,
    slurm_arg: Annotated[
        list[str] | None, typer.Option("--slurm-arg", help="extra sbatch option key=value (repeatable)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the submitted jobs have ended")] = False,
    collect: Annotated[
        Path | None,
        typer.Option(
            help="with --wait: copy each run's compact result into this folder as soon as it finishes; a "
            "run whose compact result is there already is not run again"
        ),
    ] = None,
) -> None:
    """Submit every run that is not done; returns at once (debug runs in this process) unless --wait."""
    from xpe_bench.plugins import load_registry
    from xpe_bench.runner import Runner
    from xpe_bench.sweep import Resources, live_jobs, load_sweep, node_local, submit

    if collect is not None and not wait:
        raise UserInputError("--collect needs --wait (it copies results while waiting for the jobs)")
    _check_collection_folder("--collect", collect)
    if max_parallel < 1 or runs_per_job < 1 or array_parallelism < 1 or max_array_size < 1:
        raise UserInputError("--max-parallel, --runs-per-job, --array-parallelism, --max-array-size: >= 1")
    if time <= 0:
        raise UserInputError(f"--time: {time} minutes; give a positive number")
    extra = parse_key_values(slurm_arg or [], "--slurm-arg")
    resources = Resources(
        time_min=time,
        partition=partition,
        account=account,
        qos=qos,
        gpus_per_job=gpus_per_job,
        cpus_per_task=cpus_per_task,
        mem=mem,
        array_parallelism=array_parallelism,
        max_array_size=max_array_size,
        extra=extra,
    )
    sweep = load_sweep(path)
    if launcher == "slurm" and node_local(sweep.folder):
        console.print(
            f"[bold yellow]warning:[/] {sweep.folder} is node-local on most clusters: jobs on other nodes "
            "cannot write their runs and logs there; put runs_dir on shared storage"
        )
    runner = Runner(load_registry())
    records = submit(
        sweep,
        runner,
        launcher=launcher,
        max_parallel=max_parallel,
        runs_per_job=runs_per_job,
        resources=resources,
        collected_in=collect,
    )
    if records:
        runs = sum(len(record["entries"]) for record in records)
        console.print(f"sweep {sweep.name}: {runs} entries in {len(records)} {launcher} job(s)")
        for record in records:
            console.print(
                f"  job {record['job_id']}: {len(record['entries'])} entries, log {record['stdout']}"
            )
    else:
        held = ", ".join(record["job_id"] for record in live_jobs(sweep))
        console.print(
            f"sweep {sweep.name}: nothing to submit (every run is done, collected, failed or held by a "
            "live job" + (f": {held})" if held else ")")
        )
    if wait:
        # the jobs just submitted and any the sweep already had running (an earlier submit's, whose waiter
        # ended): the same command attaches to a sweep in progress instead of returning before it is done
        _wait(live_jobs(sweep), None if collect is None else _Collector(sweep, runner, collect))


class _Collector:
    """Copies the sweep's runs into ``out`` as they finish (``submit --wait --collect``).

    Planning reads every entry's run directory (half a minute for a large sweep), so the plan is made once
    and remade only for what it could not name yet: the runs of entries blocked on a source stage, whose
    directories exist only once that stage has finished (every 5 minutes while some are blocked, and at
    the end, so nothing that finished is missed)."""

    REPLAN_SECONDS = 300.0

    def __init__(self, sweep: Any, runner: Any, out: Path) -> None:
        from xpe_bench.sweep import plan

        self.sweep, self.runner, self.out, self.collected = sweep, runner, out, set[Path]()
        self.planned, self.planned_at = plan(sweep, runner), time.monotonic()

    def __call__(self, *, final: bool = False) -> None:
        from xpe_bench.sweep import collect_newly_finished, plan

        blocked = any(run.run_dir is None for run in self.planned)
        if blocked and (final or time.monotonic() - self.planned_at >= self.REPLAN_SECONDS):
            self.planned, self.planned_at = plan(self.sweep, self.runner), time.monotonic()
        for path in collect_newly_finished(self.planned, self.out, self.collected):
            console.print(f"collected {path}")


def _wait(
    records: list[dict[str, Any]], collector: _Collector | None = None, poll_seconds: float = 10.0
) -> None:
    """Block until none of the jobs is alive any more (a progress line a minute while waiting), calling
    ``collector`` at every poll and once after the jobs have ended."""
    from xpe_bench.sweep import LIVE_STATES, job_state

    started = last = time.monotonic()
    while running := [r["job_id"] for r in records if job_state(r) in LIVE_STATES]:
        if collector is not None:
            collector()
        if time.monotonic() - last >= 60:
            minutes = (time.monotonic() - started) / 60
            console.print(f"waiting for {len(running)} job(s) ({minutes:.0f} min): {', '.join(running)}")
            last = time.monotonic()
        time.sleep(poll_seconds)
    if collector is not None:
        collector(final=True)


@sweep_app.command("status")
@user_errors
def status_command(path: SweepFile, fmt: FormatOption = OutputFormat.table) -> None:
    """A squeue-like table: every run's state (from its run directory) and its job's state."""
    from xpe_bench.report import emit
    from xpe_bench.sweep import job_state, latest_jobs

    sweep, planned = _plan(path)
    jobs = latest_jobs(sweep)
    states: dict[str, str] = {}
    rows = []
    for run in planned:
        record = jobs.get(run.entry.id)
        if record is not None and record["job_id"] not in states:
            states[record["job_id"]] = job_state(record)
        rows.append(
            {
                "run": run.run_dir.name if run.run_dir else run.entry.describe(),
                "state": run.state,
                "job": record["job_id"] if record else "-",
                "job state": states[record["job_id"]] if record else "-",
                "detail": run.detail,
            }
        )
    emit(console, rows, fmt, f"sweep {sweep.name}", ["run", "state", "job", "job state", "detail"])


@sweep_app.command("logs")
@user_errors
def logs_command(
    path: SweepFile,
    run: Annotated[str, typer.Argument(help="a run directory name (or a unique part of it)")],
    lines: Annotated[int, typer.Option(help="last lines of each log")] = 40,
) -> None:
    """The end of the log of the job that holds RUN."""
    from xpe_bench.sweep import latest_jobs

    sweep, planned = _plan(path)
    matches = [p for p in planned if p.run_dir is not None and run in p.run_dir.name]
    if len(matches) != 1:
        names = ", ".join(p.run_dir.name for p in matches[:5] if p.run_dir)
        raise UserInputError(
            f"{run!r} matches {len(matches)} runs of the sweep{': ' + names if names else ''}"
        )
    record = latest_jobs(sweep).get(matches[0].entry.id)
    if record is None:
        raise UserInputError(f"{matches[0].run_dir.name} was never submitted by this sweep")  # type: ignore[union-attr]
    for stream in ("stdout", "stderr"):
        log = Path(record[stream])
        console.rule(f"job {record['job_id']} {stream}: {log}")
        if log.exists():
            console.print(
                "\n".join(log.read_text(errors="replace").splitlines()[-lines:]),
                markup=False,
                highlight=False,
            )
        else:
            console.print("(no log yet)")


@sweep_app.command("cancel")
@user_errors
def cancel_command(path: SweepFile) -> None:
    """Cancel the sweep's live jobs (finished runs stay; interrupted ones resume on the next submit)."""
    from xpe_bench.sweep import cancel, load_sweep

    cancelled = cancel(load_sweep(path))
    console.print(f"cancelled {len(cancelled)} job(s): {', '.join(cancelled) or '-'}")


@sweep_app.command("collect")
@user_errors
def collect_command(
    path: SweepFile,
    out: Annotated[Path, typer.Option(help="folder for the compact results (what leaderboard reads)")],
) -> None:
    """Compact copies of the sweep's finished runs in one folder."""
    from xpe_bench.sweep import collect

    sweep, planned = _plan(path)
    written = collect(planned, out)
    console.print(f"sweep {sweep.name}: {len(written)} of {len(planned)} runs collected into {out}")
