from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xpe_bench.budgets import load_budget, preset_names, subset_indices
from xpe_bench.errors import UserInputError


def test_presets_exist_and_are_valid():
    assert {"smoke", "quick", "paper"} <= set(preset_names())
    for name in preset_names():
        budget = load_budget(name)
        assert budget.name == name and budget.version >= 1


def test_paper_budget_is_the_published_recipe():
    paper = load_budget("paper")
    assert paper.max_steps == 24000 and paper.batch_size == 32 and paper.max_length == 164
    assert paper.optimizer == "adafactor" and paper.precision == "bf16"
    assert paper.learning_rates["prompt"] == 5e-3 and paper.learning_rates["head"] == 5e-5
    assert paper.warmup_ratio == 0.1 and paper.grad_clip == 1.0
    assert paper.early_stopping_patience == 20 and paper.early_stopping_after == 0.5


CURVES = Path(__file__).resolve().parents[1] / "benchmarks" / "curves"


def test_standard_is_the_learning_curves_recipe_stopped_where_every_curve_converged():
    """`standard` must stay what docs/budgets.md says it is: the curves' recipe, cut at the committed curves'
    common convergence step, so that its runs are exact prefixes of the curves (constant LR, warm-up in
    steps). Regenerated curves that move the step fail this until the preset follows them."""
    standard, curves = load_budget("standard"), load_budget(str(CURVES / "curves.toml"))
    measured = json.loads((CURVES / "sib200-curves.json").read_text(encoding="utf-8"))
    assert standard.max_steps == measured["common_converged_from"]
    assert standard.schedule == "constant" and standard.warmup_steps is not None
    assert standard.train_per_lang is None and standard.dev_per_lang is None  # all the data
    cut = replace(curves, name=standard.name, description=standard.description, max_steps=standard.max_steps)
    assert cut.to_dict() == standard.to_dict()


def test_the_dev_capped_standard_differs_from_standard_only_in_its_dev_cap():
    """AfriSenti's study budget claims to be `standard` with 256 dev items per source language: anything
    else changed would make its runs incomparable with what docs/budgets.md says about `standard`."""
    standard = load_budget("standard")
    capped = load_budget(str(CURVES.parent / "experiments" / "standard-dev256.toml"))
    assert capped.dev_per_lang == 256
    same = replace(capped, name=standard.name, description=standard.description, dev_per_lang=None)
    assert same.to_dict() == standard.to_dict()


def test_the_long_dev_capped_budget_is_the_dev_capped_standard_at_twice_the_steps():
    """AfriSenti's longer budget claims to change only the length of `standard-dev256`: with its constant
    learning rates, that is what makes its runs' first 850 steps those of the shorter board's."""
    capped = load_budget(str(CURVES.parent / "experiments" / "standard-dev256.toml"))
    long = load_budget(str(CURVES.parent / "experiments" / "long-dev256.toml"))
    assert long.max_steps == 2 * capped.max_steps == 1700 and long.schedule == "constant"
    same = replace(long, name=capped.name, description=capped.description, max_steps=capped.max_steps)
    assert same.to_dict() == capped.to_dict()


def test_overrides_rename_and_change_fingerprint():
    quick = load_budget("quick")
    changed = quick.with_overrides(max_steps=7, train_per_lang=None)
    assert changed.max_steps == 7 and changed.epochs is None
    assert changed.name == "quick+max_steps=7"
    assert changed.fingerprint != quick.fingerprint
    assert quick.with_overrides() is quick


def test_budget_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nversion = 2\nmax_steps = 3\nlearning_rates = { head = 0.1 }\n')
    budget = load_budget(str(path))
    assert budget.name == "mine" and budget.learning_rate("head") == 0.1
    with pytest.raises(UserInputError, match="no learning rate for parameter role 'prompt'"):
        budget.learning_rate("prompt")


def test_subsets_depend_only_on_budget_seed_language_and_split():
    a = subset_indices(701, 50, data_seed=0, lang="eng_Latn", split="train")
    b = subset_indices(701, 50, data_seed=0, lang="eng_Latn", split="train")
    c = subset_indices(701, 50, data_seed=0, lang="deu_Latn", split="train")
    d = subset_indices(701, 50, data_seed=1, lang="eng_Latn", split="train")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert len(set(a.tolist())) == 50 and np.all(np.diff(a) > 0)
    assert np.array_equal(subset_indices(10, None, data_seed=0, lang="x", split="test"), np.arange(10))
    assert np.array_equal(subset_indices(10, 20, data_seed=0, lang="x", split="test"), np.arange(10))
