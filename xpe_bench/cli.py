"""The ``xpe-bench`` command line: a thin layer over the core (parse, call, print).

Bad input (unknown names, invalid values, missing files) is reported as one clear message on stderr with
exit code 2; finished results are never touched by such an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xpe_bench import __version__
from xpe_bench.cli_app import (
    FormatOption,
    OutputFormat,
    app,
    console,
    err_console,
    parse_key_values,
    plugin_registry,
    user_errors,
)
from xpe_bench.errors import UserInputError

MAX_SEED = 2**32 - 1
"""The largest seed numpy's and torch's generators all accept (they share the range 0 .. 2**32 - 1)."""


def _parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise UserInputError(f"--seed: {value!r} is not an integer or a comma list of integers") from exc
    if not seeds:
        raise UserInputError("--seed: give at least one seed")
    outside = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if outside:
        raise UserInputError(f"--seed: {outside[0]} is out of range; valid: 0 to {MAX_SEED}")
    return list(dict.fromkeys(seeds))


@contextlib.contextmanager
def _run_outcomes(runs_dir: Path) -> Iterator[None]:
    """How a run ends when it does not finish: one line each, with an exit code a script can act on."""
    from xpe_bench.errors import RunFailed
    from xpe_bench.store import RunLocked

    try:
        yield
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished work is kept in {runs_dir}; run the same command again to resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    except RunLocked as exc:
        err_console.print(f"[bold yellow]busy:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(75) from exc  # EX_TEMPFAIL: the same command can succeed later
    except RunFailed as exc:
        err_console.print(f"[bold red]run failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc


@app.command()
@user_errors
def run(
    task: Annotated[str, typer.Option(help="task name (see `xpe-bench tasks`)")] = "sib200",
    method: Annotated[str, typer.Option(help="method name (see `xpe-bench methods`)")] = "spt",
    backbone: Annotated[str, typer.Option(help="registered name, local HF folder, or hub id")] = "me5-small",
    sources: Annotated[str | None, typer.Option(help="training languages: group or comma list")] = None,
    targets: Annotated[str | None, typer.Option(help="evaluation languages: group or comma list")] = None,
    budget: Annotated[
        str, typer.Option(help="preset (smoke, quick, standard, paper, paper-target) or a budget .toml file")
    ] = "quick",
    seed: Annotated[str, typer.Option(help="seed, or comma list of seeds (one run each)")] = "1",
    runs_dir: Annotated[Path, typer.Option(help="where run directories are stored")] = Path("runs"),
    data_dir: Annotated[
        Path | None, typer.Option(help="local data root (else $XPE_BENCH_DATA, ../shared/data, hub)")
    ] = None,
    train_per_lang: Annotated[
        int | None, typer.Option(help="override: training examples per source language")
    ] = None,
    test_per_lang: Annotated[
        int | None, typer.Option(help="override: test examples per target language")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="override: optimizer steps")] = None,
    batch_size: Annotated[int | None, typer.Option(help="override: training batch size")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="override: compute precision, fp32, bf16, or auto (the budget's, but fp32 where it is bf16 "
            "and this CPU computes bf16 slowly)"
        ),
    ] = None,
    frozen_backbone_dtype: Annotated[
        str | None,
        typer.Option(help="override: storage of a frozen backbone, fp32, bf16, or auto (as for --precision)"),
    ] = None,
    dropout_kernel: Annotated[
        str | None,
        typer.Option(
            help="override: encoder dropout while training, torch or lean (same distribution, faster)"
        ),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="method option key=value (repeatable)")
    ] = None,
    regime: Annotated[str, typer.Option(help="zero-shot-xlt, supervised or in-language")] = "zero-shot-xlt",
    init_from: Annotated[Path | None, typer.Option(help="supervised: the source-stage run directory")] = None,
    init_parts: Annotated[
        str, typer.Option(help="supervised: auto (the prompt if there is one, as the paper), prompt, all")
    ] = "auto",
) -> None:
    """Train METHOD and evaluate it on every target language.

    Regimes: zero-shot-xlt trains on --sources and tests every target with no target data; supervised starts
    from a source-stage run (--init-from) and trains on each target's own split; in-language trains and
    tests each target alone.
    """
    from transformers.utils import logging as transformers_logging

    from xpe_bench import distributed, numerics
    from xpe_bench.budgets import load_budget
    from xpe_bench.convergence import RULE, RULE_VERSION
    from xpe_bench.paths import check_writable_dir
    from xpe_bench.report import RichProgress, print_run_result
    from xpe_bench.runner import Reporters, Runner, RunRequest

    transformers_logging.disable_progress_bar()  # our own bars show the phases
    distributed.start()

    preset = load_budget(budget)
    chosen = preset.with_overrides(
        train_per_lang=train_per_lang,
        test_per_lang=test_per_lang,
        max_steps=max_steps,
        batch_size=batch_size,
        precision=numerics.resolve(precision, preset.precision),
        frozen_backbone_dtype=numerics.resolve(frozen_backbone_dtype, preset.frozen_backbone_dtype),
        dropout_kernel=dropout_kernel,
    )
    seeds = _parse_seeds(seed)
    options = parse_key_values(option or [])
    check_writable_dir(runs_dir, "--runs-dir")
    runner = Runner(
        plugin_registry(),
        Reporters(
            train=RichProgress(console),
            evaluate=RichProgress(console),
            note=lambda message: console.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True),
        ),
    )
    with _run_outcomes(runs_dir):
        for one_seed in seeds:
            request = RunRequest(
                task=task,
                method=method,
                budget=chosen,
                seed=one_seed,
                runs_dir=runs_dir,
                backbone=backbone,
                sources=sources,
                targets=targets,
                data_dir=data_dir,
                options=options,
                regime=regime,
                init_from=init_from,
                init_parts=init_parts,
            )
            console.rule(
                f"{method} on {task} · {regime} · backbone {backbone} · budget {chosen.name} "
                f"· seed {one_seed}"
            )
            outcomes = runner.execute(request)
            if not outcomes:  # a helper process of a data-parallel run: the main process reports
                continue
            metrics = {lang: m for outcome in outcomes for lang, m in outcome.metrics.items()}
            reused = sum(outcome.reused_state for outcome in outcomes)
            if reused:
                console.print(
                    f"[dim]reused the stored trained state of {reused} of {len(outcomes)} run(s)[/]"
                )
            reused_languages = sum(len(outcome.reused_languages) for outcome in outcomes)
            if reused_languages:
                console.print(f"[dim]reused stored predictions for {reused_languages} languages[/]")
            print_run_result(console, metrics, outcomes[0].task.languages, title=f"{method} seed {one_seed}")
            train_s = sum(o.record.timings.train_seconds for o in outcomes)
            eval_s = sum(o.record.timings.eval_seconds for o in outcomes)
            where = outcomes[0].store.path if len(outcomes) == 1 else f"{len(outcomes)} runs in {runs_dir}"
            console.print(
                f"train {train_s:.0f} s · evaluate {eval_s:.0f} s · run directory: [bold]{where}[/]"
            )
            verdicts = [outcome.record.assess() for outcome in outcomes]
            unconverged = [v for v in verdicts if v.applicable and not v.converged]
            if unconverged:
                many = f"{len(unconverged)} of {len(verdicts)} runs"
                why = unconverged[0].reason if len(verdicts) == 1 else many
                console.print(
                    f"[bold yellow]warning:[/] not converged by {RULE} v{RULE_VERSION} ({why}): more steps "
                    "may change these results",
                    highlight=False,
                    soft_wrap=True,
                )


@app.command()
@user_errors
def export(
    runs: Annotated[list[Path], typer.Argument(help="finished run directories")],
    out: Annotated[Path, typer.Option(help="folder for the compact files")] = Path("leaderboards/results"),
) -> None:
    """Write compact, committable copies of finished runs (manifest, metrics, per-item labels; .json.gz)."""
    from xpe_bench.compact import export_run

    for run_dir in runs:
        path = export_run(run_dir, out)
        console.print(f"{path}  ({path.stat().st_size / 1024:.0f} KiB)")


@app.command("export-peft")
@user_errors
def export_peft(
    run: Annotated[Path, typer.Argument(help="a finished spt, xpe or dual run directory")],
    out: Annotated[Path, typer.Option(help="new folder for the PEFT adapter and head.safetensors")],
) -> None:
    """Write a trained SPT, XPE or DUAL prompt as a PEFT prompt-tuning adapter plus its head."""
    from xpe_bench.peft_export import export_prompt_adapter

    exported = export_prompt_adapter(run, out, plugin_registry())
    console.print(
        f"{exported.folder}: {exported.num_tokens} virtual tokens, head reads position "
        f"{exported.read_position}, {len(exported.labels)} labels"
    )


@app.command()
@user_errors
def tasks(fmt: FormatOption = OutputFormat.table) -> None:
    """List the registered tasks."""
    from xpe_bench.report import emit

    rows = [spec.describe() for spec in plugin_registry().tasks.values()]
    emit(console, rows, fmt, "tasks", ["name", "version", "languages", "labels", "hub_id", "description"])


@app.command()
@user_errors
def methods(
    names: Annotated[list[str] | None, typer.Argument(help="show these methods' options in full")] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the registered methods; with names, each one's options (type, default, valid values, help)."""
    from xpe_bench.report import emit

    registry = plugin_registry()
    if not names:
        rows = [spec.describe() for spec in registry.methods.values()]
        if fmt == OutputFormat.table:  # the full defaults are in `methods NAME` and in the JSON
            rows = [row | {"options": ", ".join(row["options"])} for row in rows]
        emit(console, rows, fmt, "methods", ["name", "trains", "description", "options"])
        return
    specs = [registry.method(name) for name in names]  # an unknown name stops before anything is printed
    if fmt == OutputFormat.json:
        emit(console, [spec.describe() | {"options": spec.describe_options()} for spec in specs], fmt, "", [])
        return
    for spec in specs:
        title = f"{spec.name}: {spec.description}"
        emit(console, spec.describe_options(), fmt, title, ["option", "type", "default", "valid", "help"])


@app.command()
@user_errors
def budgets(fmt: FormatOption = OutputFormat.table) -> None:
    """List the budget presets."""
    from xpe_bench.budgets import load_budget, preset_names
    from xpe_bench.report import emit

    rows = [
        load_budget(name).to_dict() | {"fingerprint": load_budget(name).fingerprint[:12]}
        for name in preset_names()
    ]
    columns = [
        "name",
        "version",
        "train_per_lang",
        "max_steps",
        "batch_size",
        "max_length",
        "optimizer",
        "precision",
        "description",
    ]
    emit(console, rows, fmt, "budgets", columns)


@app.command()
@user_errors
def backbones(fmt: FormatOption = OutputFormat.table) -> None:
    """List the registered backbones (any local Hugging Face folder or hub id works too)."""
    from xpe_bench.report import emit

    rows = [
        {
            "name": spec.name,
            "description": spec.description,
            "text_prefix": spec.text_prefix,
            "pooling": spec.pooling,
        }
        for spec in plugin_registry().backbones.values()
    ]
    emit(console, rows, fmt, "backbones", ["name", "description", "text_prefix", "pooling"])


@app.command()
@user_errors
def prepare(
    backbone: Annotated[
        str, typer.Argument(help="registered backbone to build into the cache")
    ] = "me5-small",
) -> None:
    """Build a registered backbone into the cache once (e.g. convert the embedded me5-small)."""
    from xpe_bench.paths import cache_root

    registry = plugin_registry()
    if backbone not in registry.backbones:
        raise UserInputError(f"unknown backbone {backbone!r}; registered: {', '.join(registry.backbones)}")
    folder = registry.backbones[backbone].prepare(cache_root())
    console.print(f"{backbone} ready at {folder}")


@app.command()
@user_errors
def inspect(
    method: Annotated[str, typer.Option(help="method name")] = "spt",
    backbone: Annotated[str, typer.Option(help="registered name, folder, or hub id")] = "me5-small",
    task: Annotated[str, typer.Option(help="task (sets the number of labels)")] = "sib200",
    random_init: Annotated[
        bool, typer.Option("--random-init", help="architecture only: no weights are read or downloaded")
    ] = False,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="method option key=value")
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Total and trainable parameters of METHOD on BACKBONE, per module."""
    from xpe_bench.backbones import architecture_only, load_backbone
    from xpe_bench.paths import cache_root
    from xpe_bench.report import emit

    registry = plugin_registry()
    spec, task_spec = registry.method(method), registry.task(task)
    if random_init:
        loaded = architecture_only(backbone, registry.backbones, cache_root())
    else:
        loaded = load_backbone(backbone, registry.backbones, cache_root())
    instance = spec.create(parse_key_values(option or []))
    instance.setup(loaded, task_spec)
    report = instance.parameter_report().to_dict()
    if fmt == OutputFormat.json:
        header = {"method": method, "backbone": backbone, "task": task, "num_labels": task_spec.num_labels}
        console.print_json(json.dumps(header | report))
        return
    rows = [{"module": name, **counts} for name, counts in report["modules"].items()]
    rows.append({"module": "all", "total": report["total"], "trainable": report["trainable"]})
    title = (
        f"{method} on {backbone} ({task_spec.num_labels} labels): {report['trainable']:,} trainable of "
        f"{report['total']:,} ({report['trainable_percent']:.3f}%)"
    )
    emit(console, rows, fmt, title, ["module", "total", "trainable"])


@app.command()
@user_errors
def plugins(fmt: FormatOption = OutputFormat.table) -> None:
    """List plugins: loaded (with what each provides), disabled ($XPE_BENCH_DISABLE_PLUGINS), failed (why)."""
    from xpe_bench.plugins import load_registry
    from xpe_bench.report import emit

    rows = [info.to_dict() for info in load_registry().plugins]
    if fmt == OutputFormat.table:
        for row in rows:
            provided = row["provides"].items()
            row["provides"] = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in provided)
    columns = ["name", "status", "provides", "distribution", "version", "module", "path", "error"]
    emit(console, rows, fmt, "plugins", columns)


@app.command()
@user_errors
def languages(
    task: Annotated[str, typer.Option(help="task whose languages to list")] = "sib200",
    group: Annotated[
        str | None, typer.Option(help="a named group or comma list (see the groups listing)")
    ] = None,
    joshi: Annotated[str | None, typer.Option(help="Joshi class 0-5, or 'unclassified'")] = None,
    groups: Annotated[bool, typer.Option("--groups", help="list the named groups instead")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List a task's languages with their metadata (or its named groups with --groups)."""
    from xpe_bench.report import emit

    spec = plugin_registry().task(task)
    table = spec.languages
    if groups:
        rows = [
            {"group": name, "languages": len(codes), "description": table.descriptions[name]}
            for name, codes in table.groups.items()
        ]
        emit(console, rows, fmt, f"{task} language groups", ["group", "languages", "description"])
        return
    rows = [table[code].to_dict() for code in table.select(group, joshi)]
    columns = ["code", "name", "joshi_class", "family", "script", "region", "cc100", "low_performing"]
    emit(console, rows, fmt, f"{task}: {len(rows)} languages", columns)


@app.command()
@user_errors
def curves(
    runs: Annotated[
        list[Path], typer.Argument(help="run directories, compact .json.gz files, or folders of runs")
    ],
    out: Annotated[Path, typer.Option("--out", help="the PNG to write (.md and .json go next to it)")],
) -> None:
    """Plot learning curves (source-dev accuracy, dev and train loss per step; one line per seed) with each
    run's convergence verdict, and write their numbers beside the PNG as Markdown and JSON."""
    import shlex

    from xpe_bench.curves import write_curves

    command = shlex.join(["xpe-bench", "curves", *map(str, runs), "--out", str(out)])
    written, found = write_curves(runs, out, command=command)
    converged = sum(curve.convergence.converged for curve in found)
    console.print(
        f"wrote {', '.join(map(str, written))}: {len(found)} trained runs, {converged} converged",
        highlight=False,
        soft_wrap=True,
    )


def version_callback(value: bool) -> None:
    if value:
        console.print(f"xpe-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True)] = False,
) -> None:
    """xpe-bench: cross-lingual transfer, honestly measured."""


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


from xpe_bench import cli_compare, cli_sweep  # noqa: E402, F401  (register compare, leaderboard, sweep)
