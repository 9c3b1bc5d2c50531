"""The ``lean`` dropout kernel: the same dropout distribution and gradients as the plain computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xpe_bench.backbones import load_backbone
from xpe_bench.budgets import load_budget
from xpe_bench.lean_dropout import (
    ATTENTION_NAME,
    LeanDropout,
    _AttentionWithDropout,
    drop_mask,
    lean_attention_forward,
    set_dropout_kernel,
)
from xpe_bench.runner import Runner, RunRequest


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_mask_drops_at_the_rate_asked_and_rescales_exactly(p):
    torch.manual_seed(0)
    drop, scale = drop_mask((1000, 1000), p)
    assert drop.dtype == torch.bool and drop.shape == (1000, 1000)
    drop_rate = drop.float().mean().item()
    assert abs(drop_rate - p) < 5 * (p * (1 - p) / 1e6) ** 0.5  # five standard errors
    quantised = round(p * 65536) / 65536
    assert scale == pytest.approx(1 / (1 - quantised), rel=1e-12)
    assert abs(quantised - p) <= 0.5 / 65536
    # every 16-bit lane of the random words is used, not just the low ones
    lanes = drop.view(-1, 4).float().mean(0)
    assert torch.all((lanes - p).abs() < 0.005)


def test_drop_mask_is_reproducible_from_the_seed_and_rejects_bad_p():
    torch.manual_seed(7)
    a, _ = drop_mask((5, 7), 0.1)
    torch.manual_seed(7)
    b, _ = drop_mask((5, 7), 0.1)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_mask((3,), 1.0)


def test_lean_dropout_keeps_the_expectation_and_passes_gradient_through_kept_elements():
    torch.manual_seed(1)
    layer = LeanDropout(0.2)
    x = torch.ones(400, 500, requires_grad=True)
    y = layer(x)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * keep * scale)/dx = keep * scale = y for x = 1
    layer.eval()
    assert layer(x) is x


def test_attention_with_dropout_matches_plain_autograd_under_the_same_mask():
    torch.manual_seed(0)
    b, h, length, d = 3, 2, 9, 4
    q, k, v = (torch.randn(b, h, length, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    attend = torch.ones(b, 1, length, length, dtype=torch.bool)
    attend[0, ..., 6:] = False  # padding in the first sequence
    bias = torch.zeros(attend.shape, dtype=torch.float64).masked_fill_(~attend, -1e30)
    grad_out = torch.randn(b, h, length, d, dtype=torch.float64)

    torch.manual_seed(5)
    out = _AttentionWithDropout.apply(q, k, v, bias, 0.3, 0.7).transpose(1, 2)  # B x L x H x D back
    grads = torch.autograd.grad(out, (q, k, v), grad_out)

    torch.manual_seed(5)  # the kernel's only random draw is its drop-mask
    drop, scale = drop_mask((b, h, length, length), 0.3)
    plain = (torch.softmax(q @ k.transpose(-1, -2) * 0.7 + bias, -1) * ~drop * scale) @ v
    plain_grads = torch.autograd.grad(plain, (q, k, v), grad_out)

    torch.testing.assert_close(out, plain, rtol=0, atol=1e-12)
    for lean, reference in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(lean, reference, rtol=0, atol=1e-12)
    assert torch.all(grads[0][0, :, :, :].abs().sum(-1) > 0)


def test_without_dropout_the_lean_attention_is_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    attend = torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).view(2, 1, 1, 5).expand(2, 1, 5, 5)
    out, _ = lean_attention_forward(nn.Module(), q, k, v, attend, dropout=0.0, scaling=0.5)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend, scale=0.5)
    assert torch.equal(out, expected.transpose(1, 2).contiguous())


def test_set_dropout_kernel_switches_an_encoder_both_ways_without_changing_evaluation(registry, cache_dir):
    backbone = load_backbone("tiny-random", registry.backbones, cache_dir)
    encoder = backbone.model
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        before = encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    set_dropout_kernel(encoder, "lean")
    kinds = {type(m) for m in encoder.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {LeanDropout}
    assert encoder.config._attn_implementation == ATTENTION_NAME
    with torch.no_grad():
        assert torch.equal(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, before)
    encoder.train()
    out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    out.sum().backward()  # trains through the lean kernels
    assert not torch.equal(out.detach(), before)
    encoder.eval()

    set_dropout_kernel(encoder, "torch")
    assert {type(m) for m in encoder.modules() if isinstance(m, nn.Dropout)} == {nn.Dropout}
    assert encoder.config._attn_implementation == "sdpa"


@pytest.mark.data
def test_a_lean_budget_trains_records_its_kernel_and_keeps_old_fingerprints(registry, tmp_path):
    quick = load_budget("quick")
    # the fingerprint of every stored `quick` result (leaderboards/results/): adding the field kept it
    assert quick.fingerprint.startswith("beb266c8c793")
    lean = load_budget("smoke").with_overrides(dropout_kernel="lean")
    assert lean.fingerprint != load_budget("smoke").fingerprint
    request = RunRequest(
        task="sib200",
        method="spt",
        budget=lean,
        seed=1,
        runs_dir=tmp_path,
        backbone="tiny-random",
        sources="eng_Latn",
        targets="eng_Latn",
    )
    (outcome,) = Runner(registry).execute(request)
    assert outcome.record.budget.settings["dropout_kernel"] == "lean"
    assert "dropout_kernel" not in load_budget("smoke").to_dict()
    (again,) = Runner(registry).execute(request)  # resumes: nothing to redo, same result
    assert again.metrics == outcome.metrics


def test_bf16_inputs_get_fp32_attention_arithmetic():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8) for _ in range(3))
    torch.manual_seed(1)
    wide = _AttentionWithDropout.apply(q, k, v, None, 0.1, 0.35)
    torch.manual_seed(1)  # the same mask
    narrow = _AttentionWithDropout.apply(*(t.bfloat16() for t in (q, k, v)), None, 0.1, 0.35)
    assert narrow.dtype == torch.bfloat16 and narrow.is_contiguous()
    # only the inputs' and the output's rounding to bf16 differ (3 significant digits)
    torch.testing.assert_close(narrow.float(), wide, rtol=0.02, atol=0.02)
