"""bf16 on a CPU without bf16 instructions: a run says what it will cost, and ``auto`` computes in fp32."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import resources

import pytest
from typer.testing import CliRunner

from xpe_bench import numerics
from xpe_bench.budgets import load_budget
from xpe_bench.cli import app
from xpe_bench.runner import Reporters, Runner, RunRequest

SLOW = 390.0  # what an AVX2-only EPYC measured: the fallback kernel
FAST = 0.5  # what a CPU with AVX-512 BF16 measures


def _cpu(monkeypatch, factor: float) -> None:
    monkeypatch.setattr(numerics, "bf16_slowdown", lambda: factor)


def test_auto_keeps_the_budgets_numerics_where_bf16_is_fast(monkeypatch):
    _cpu(monkeypatch, FAST)
    assert numerics.resolve("auto", "bf16") is None  # no override: the run is the preset's own
    assert numerics.resolve("auto", "fp32") is None


def test_auto_computes_in_fp32_where_bf16_is_slow_and_explicit_values_pass_through(monkeypatch):
    _cpu(monkeypatch, SLOW)
    assert numerics.resolve("auto", "bf16") == "fp32"
    assert numerics.resolve("auto", "fp32") is None
    assert numerics.resolve("bf16", "fp32") == "bf16"  # what the user asked for, however slow
    assert numerics.resolve(None, "bf16") is None


def test_the_slowdown_is_measured_once_and_is_a_ratio():
    numerics.bf16_slowdown.cache_clear()
    factor = numerics.bf16_slowdown()
    assert math.isfinite(factor) and factor > 0
    assert numerics.bf16_slowdown() is factor  # cached: a process measures once


def test_only_a_bf16_budget_on_a_slow_cpu_gets_a_note(monkeypatch):
    quick = load_budget("quick")  # bf16 autocast and a bf16 frozen backbone
    _cpu(monkeypatch, FAST)
    assert numerics.slow_bf16_note(quick) is None
    _cpu(monkeypatch, SLOW)
    note = numerics.slow_bf16_note(quick)
    assert note is not None
    assert "budget quick" in note and "precision=bf16, frozen_backbone_dtype=bf16" in note
    assert "390x" in note and "--precision auto" in note

    def unmeasured() -> float:
        raise AssertionError("an fp32 budget needs no measurement")

    monkeypatch.setattr(numerics, "bf16_slowdown", unmeasured)
    assert numerics.slow_bf16_note(load_budget("smoke")) is None


@pytest.mark.usefixtures("mock_task")
def test_a_runner_says_it_once_per_budget_before_the_first_run(registry, tmp_path, monkeypatch):
    _cpu(monkeypatch, SLOW)
    notes: list[str] = []
    runner = Runner(registry, Reporters(note=notes.append))
    budget = replace(load_budget("smoke"), name="smoke-bf16", precision="bf16")
    for seed in (1, 2):
        request = RunRequest(
            task="mock",
            method="head-only",
            budget=budget,
            seed=seed,
            runs_dir=tmp_path / "runs",
            backbone="tiny-random",
            sources="aaa_Latn",
            targets="aaa_Latn",
        )
        runner.execute(request)
    said = [note for note in notes if "computes in bf16" in note]
    assert len(said) == 1 and said[0].startswith("budget smoke-bf16 computes in bf16 (precision=bf16)")
    assert notes[0] == said[0]  # before anything else the runs report


@pytest.mark.usefixtures("mock_task")
def test_cli_auto_runs_a_bf16_budget_in_fp32_on_a_slow_cpu_and_records_it(tmp_path, monkeypatch):
    _cpu(monkeypatch, SLOW)
    smoke = resources.files("xpe_bench.resources").joinpath("budgets", "smoke.toml").read_text()
    budget_file = tmp_path / "smoke-bf16.toml"
    budget_file.write_text(smoke.replace('name = "smoke"', 'name = "smoke-bf16"') + 'precision = "bf16"\n')
    args = ["run", "--task", "mock", "--method", "head-only", "--backbone", "tiny-random"]
    args += ["--budget", str(budget_file), "--sources", "aaa_Latn", "--targets", "aaa_Latn"]
    args += ["--runs-dir", str(tmp_path / "runs"), "--precision", "auto", "--frozen-backbone-dtype", "auto"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "computes in bf16" not in result.output  # the run computed in fp32: nothing slow to announce
    (run,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["budget"]["precision"] == "fp32"
    assert manifest["budget"]["name"] == "smoke-bf16+precision=fp32"  # never passes for the preset
    assert manifest["hardware"]["cpu_capability"]
