"""Supervised and in-language regimes on the tiny random backbone."""

from __future__ import annotations

import pytest
import torch

from xpe_bench.budgets import load_budget
from xpe_bench.errors import UserInputError
from xpe_bench.runner import Runner, RunRequest

pytestmark = pytest.mark.usefixtures("mock_task")


def _request(tmp_path, **overrides):
    values = {
        "task": "mock",
        "method": "xpe",
        "budget": load_budget("smoke"),
        "seed": 1,
        "runs_dir": tmp_path / "runs",
        "backbone": "tiny-random",
        "sources": "aaa_Latn",
        "targets": "aaa_Latn",
    }
    values.update(overrides)
    return RunRequest(**values)


def test_in_language_trains_each_target_on_itself(registry, tmp_path):
    outcomes = Runner(registry).execute(
        _request(tmp_path, regime="in-language", sources=None, targets="bbb_Latn,ccc_Cyrl")
    )
    assert [o.record.sources for o in outcomes] == [("bbb_Latn",), ("ccc_Cyrl",)]
    assert [list(o.metrics) for o in outcomes] == [["bbb_Latn"], ["ccc_Cyrl"]]
    assert all(o.record.regime == "in-language" for o in outcomes)
    assert all(o.record.method.options["xpe_dropout"] == 0.0 for o in outcomes)  # target stage
    assert len({o.store.path for o in outcomes}) == 2


@pytest.mark.parametrize("parts", ["auto", "all"])
def test_supervised_starts_from_the_source_stage(registry, tmp_path, parts):
    """auto (the paper): the source prompt and a fresh head; all: the head is copied too."""
    (source,) = Runner(registry).execute(_request(tmp_path))
    frozen = load_budget("smoke").with_overrides(
        learning_rates={"prompt": 0.0, "prompt_encoder": 0.0, "head": 0.0}, max_steps=1
    )
    supervised = _request(
        tmp_path,
        regime="supervised",
        sources=None,
        targets="bbb_Latn",
        init_from=source.store.path,
        init_parts=parts,
        budget=frozen,
    )
    (target,) = Runner(registry).execute(supervised)
    assert target.record.init_from is not None and target.record.init_from.key == source.record.key
    assert target.record.init_from.parts == ("prompt" if parts == "auto" else "all")
    before, after = source.store.load_state(), target.store.load_state()
    prompt_keys = [k for k in before if k.startswith("prompt.")]
    assert prompt_keys and all(torch.equal(before[k], after[k]) for k in prompt_keys)
    head_copied = torch.equal(before["head.dense.weight"], after["head.dense.weight"])
    assert head_copied == (parts == "all")


def test_regime_errors_are_user_errors(registry, tmp_path):
    runner = Runner(registry)
    with pytest.raises(UserInputError, match="needs --init-from"):
        runner.execute(_request(tmp_path, regime="supervised", sources=None))
    with pytest.raises(UserInputError, match="--sources is not used"):
        runner.execute(_request(tmp_path, regime="in-language"))
    with pytest.raises(UserInputError, match="--regime: 'few-shot'"):
        runner.execute(_request(tmp_path, regime="few-shot"))
    (source,) = runner.execute(_request(tmp_path, method="spt"))
    with pytest.raises(UserInputError, match="it ran method spt, not xpe"):
        runner.execute(_request(tmp_path, regime="supervised", sources=None, init_from=source.store.path))
    with pytest.raises(UserInputError, match="not a finished run directory"):
        runner.execute(_request(tmp_path, regime="supervised", sources=None, init_from=tmp_path))
