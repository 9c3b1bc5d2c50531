"""The committed study files (``benchmarks/experiments/``, ``benchmarks/curves/``) are what the boards and
curves are rebuilt from: a typo in one (an unknown method, a budget file that moved, a sweep that
``reproduce.sh`` does not know) would surface only hours into a rebuild. These checks need no model."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from xpe_bench.budgets import load_budget
from xpe_bench.plugins import load_registry
from xpe_bench.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "benchmarks" / "experiments"
SWEEP_FILES = sorted(
    path
    for folder in (EXPERIMENTS, ROOT / "benchmarks" / "curves")
    for path in folder.glob("*.toml")
    if "fixed" in tomllib.loads(path.read_text(encoding="utf-8"))  # budget files have no [fixed] table
)


def test_the_committed_sweep_files_are_found():
    names = {path.stem for path in SWEEP_FILES}
    assert {"sib200-joshi5-standard", "nusax-senti-standard", "afrisenti-standard", "sib200"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_every_entry_of_a_committed_sweep_names_a_known_task_method_and_budget(
    path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(ROOT)  # budget files are named relative to the repository root, as reproduce.sh runs
    sweep = load_sweep(path)
    registry = load_registry()
    for entry in sweep.entries:
        values = entry.values
        assert values["method"] in registry.methods, entry.describe()
        task = registry.task(values["task"])
        load_budget(values["budget"])
        for key in ("sources", "targets"):
            if key in values:  # a group or a list of codes; an unknown one raises UserInputError
                assert task.languages.resolve(values[key], option=key), f"{entry.describe()}: no {key}"


def test_reproduce_sh_knows_every_study_sweep_and_its_board():
    script = (EXPERIMENTS / "reproduce.sh").read_text(encoding="utf-8")
    cases = set(re.findall(r"^\s+([a-z0-9-]+)\) board=", script, flags=re.MULTILINE))
    studies = {path.stem for path in EXPERIMENTS.glob("*.toml") if path in SWEEP_FILES}
    assert studies == cases
