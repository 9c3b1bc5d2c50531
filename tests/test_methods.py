"""The built-in methods on the tiny random backbone: equivalences, controls, caching, zero-shot scorers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from xpe_bench import features
from xpe_bench.backbones import load_backbone
from xpe_bench.budgets import load_budget
from xpe_bench.errors import UserInputError
from xpe_bench.runner import Runner, RunRequest
from xpe_bench_plugins.prompt_tuning import split_tokens


def _run(registry, tmp_path, method, **overrides):
    values = {
        "task": "sib200",
        "method": method,
        "budget": load_budget("smoke"),
        "seed": 3,
        "runs_dir": tmp_path,
        "backbone": "tiny-random",
        "sources": "eng_Latn,fra_Latn",
        "targets": "eng_Latn,yor_Latn",
    }
    values.update(overrides)
    (outcome,) = Runner(registry).execute(RunRequest(**values))
    return outcome


def _predictions(outcome):
    return {lang: outcome.store.read_predictions(lang) for lang in sorted(outcome.metrics)}


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, (20, 0)), (0.3, (14, 6)), (0.7, (6, 14)), (1.0, (0, 20)), (0.01, (19, 1)), (0.99, (1, 19))],
)
def test_dual_split_uses_the_papers_rounding(ratio, expected):
    assert split_tokens(20, ratio) == expected


@pytest.mark.parametrize(("end_point", "ratio"), [("spt", "0.0"), ("xpe", "1.0")])
@pytest.mark.data
def test_dual_end_points_match_spt_and_xpe_exactly(registry, tmp_path, end_point, ratio):
    plain = _run(registry, tmp_path / "a", end_point)
    dual = _run(registry, tmp_path / "b", "dual", options={"ratio": ratio})
    a, b = plain.store.load_state(), dual.store.load_state()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _predictions(plain) == _predictions(dual)


@pytest.mark.data
def test_trainable_parameters_by_method(registry, tmp_path):
    counts = {}
    for method in ("spt", "xpe", "dual-30", "head-only", "full-ft"):
        outcome = _run(registry, tmp_path / method, method)
        counts[method] = outcome.record.method.parameters
    hidden, labels = 32, 7
    head = hidden * hidden + hidden + hidden * labels + labels
    mlp = (hidden * 8 + 8) + (8 * 8 + 8) + (8 * hidden + hidden)
    assert counts["spt"]["trainable"] == 20 * hidden + head
    assert counts["xpe"]["trainable"] == 20 * hidden + mlp + head
    assert counts["dual-30"]["trainable"] == 20 * hidden + mlp + head
    assert counts["head-only"]["trainable"] == head
    assert counts["full-ft"]["trainable"] == counts["full-ft"]["total"]
    assert counts["spt"]["modules"]["encoder"]["trainable"] == 0


@pytest.mark.data
def test_full_ft_updates_the_backbone(registry, tmp_path):
    outcome = _run(registry, tmp_path, "full-ft")
    state = outcome.store.load_state()
    assert any(key.startswith("encoder.") for key in state)
    original = load_backbone("tiny-random", registry.backbones, outcome.store.path.parent.parent / "unused")
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(
        state[name], dict(original.model.named_parameters())[name.removeprefix("encoder.")]
    )


@pytest.mark.data
def test_head_only_computes_features_once_across_seeds(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("XPE_BENCH_CACHE", str(tmp_path / "fresh-cache"))
    calls = []
    real = features.compute_features

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "compute_features", counting)
    # tiny-random has a stable weights hash, so its features are cacheable like any real backbone's
    first = _run(registry, tmp_path, "head-only", seed=1)
    n_first = len(calls)
    assert n_first == 4  # train, dev, and one test set per target language
    second = _run(registry, tmp_path, "head-only", seed=2)
    assert len(calls) == n_first  # every feature came from the cache
    assert first.store.path != second.store.path
    assert second.record.fit is not None and second.record.fit["steps_run"] == 4


@pytest.mark.data
def test_zero_shot_embedding_scores_label_descriptions(registry, tmp_path):
    outcome = _run(registry, tmp_path, "zero-shot")
    assert outcome.record.fit == {"trained": False, "scoring": "embedding"}
    rows = outcome.store.read_predictions("eng_Latn")
    assert all(-1.0001 <= s <= 1.0001 for row in rows for s in row["scores"])  # cosine similarities
    assert outcome.record.method.trainable == 0


@pytest.mark.data
def test_zero_shot_cloze_with_an_mlm_head(registry, tmp_path, cache_dir):
    tiny = load_backbone("tiny-random", registry.backbones, cache_dir)
    folder = tmp_path / "tiny-mlm"
    config = BertConfig(
        **{k: v for k, v in tiny.model.config.to_dict().items() if k in BertConfig().to_dict()}
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny.location).save_pretrained(folder)
    outcome = _run(registry, tmp_path / "runs", "zero-shot", backbone=str(folder))
    assert outcome.record.fit is not None and outcome.record.fit["scoring"] == "cloze"
    scores = np.array([row["scores"] for row in outcome.store.read_predictions("eng_Latn")])
    assert scores.shape == (8, 7) and np.all(scores <= 0)  # log-probabilities
    assert json.dumps(outcome.record.to_dict(), allow_nan=False)  # the record stays strict JSON


@pytest.mark.data
def test_fast_mode_holds_the_frozen_backbone_in_bf16_and_trains_in_fp32(registry, tmp_path):
    fast = load_budget("smoke").with_overrides(precision="bf16", frozen_backbone_dtype="bf16")
    outcome = _run(registry, tmp_path, "xpe", budget=fast)
    state = outcome.store.load_state()
    assert state and all(tensor.dtype == torch.float32 for tensor in state.values())
    assert outcome.record.budget.settings["frozen_backbone_dtype"] == "bf16"
    reference = _run(registry, tmp_path / "fp32", "xpe")
    agree = np.mean(
        [
            a["pred"] == b["pred"]
            for lang in outcome.metrics
            for a, b in zip(
                outcome.store.read_predictions(lang), reference.store.read_predictions(lang), strict=True
            )
        ]
    )
    assert agree >= 0.75  # same seed, same examples: bf16 storage changes rounding, not the model


def test_option_rules_must_fit_the_options_they_name():
    from xpe_bench.methods import Choice, MethodSpec, Range

    with pytest.raises(ValueError, match=r"rules for options it does not have: \['size'\]"):
        MethodSpec("m", "", lambda options: None, {"k": 1}, rules={"size": Range(1)})
    with pytest.raises(ValueError, match=r"defaults break their own rules: \['k'\]"):
        MethodSpec("m", "", lambda options: None, {"k": "x"}, rules={"k": Choice(("a", "b"))})
    spec = MethodSpec("m", "", lambda options: None, {"k": 0.5}, rules={"k": Range(0.0, 1.0, high_open=True)})
    assert spec.resolve_options({"k": "0"}) == {"k": 0.0}
    assert spec.describe()["valid"] == {"k": "in [0.0, 1.0)"}
    for bad in ("1", "-0.1", "nan", "inf"):
        with pytest.raises(UserInputError, match=r"option m\.k: .*valid: in \[0\.0, 1\.0\)"):
            spec.resolve_options({"k": bad})


def test_help_for_an_option_the_method_lacks_is_refused():
    from xpe_bench.methods import MethodSpec

    with pytest.raises(ValueError, match=r"help for options it lacks: \['tokens'\]"):
        MethodSpec("m", "d", lambda options: None, {"num_tokens": 2}, help={"tokens": "typo"})
