"""The ``lean`` dropout kernel: training-time dropout inside the encoder at a fraction of torch's CPU cost.

Why it exists. The recipe trains with dropout active in the (frozen) backbone, as the XPE authors' code
did. On CPU that costs more than it looks (profile in ``benchmarks/RESULTS.md``):

* torch draws every dropout mask with ``bernoulli_``, one float per element: 15% of an fp32 training step
  and 24% of a fast-mode step on the 2-core reference machine;
* attention dropout forces ``scaled_dot_product_attention`` onto its unfused math path, which also keeps
  the B x H x L x L scores, probabilities and masks of every layer for the backward pass (most of the
  memory of a training step).

``lean`` keeps the same dropout distribution and changes only how it is computed:

* masks come from 16-bit random words (:func:`keep_mask`): an element is dropped with probability
  ``round(p * 65536) / 65536`` (0.1000061 for p = 0.1) and kept ones are scaled by the exact inverse of the
  keep rate, so the expectation is unchanged;
* attention with dropout runs as one autograd function (:class:`_AttentionWithDropout`) that saves q, k, v
  and a 1-byte mask, and recomputes the probabilities in the backward pass (one extra L x L product, under
  3% of an encoder layer's FLOPs). Without dropout (evaluation) it hands over to SDPA's fused kernels.

The masks are drawn from torch's generator, so runs stay reproducible from their seed, but they are not
the masks ``torch`` would draw: a budget's ``dropout_kernel`` field records which kernel a result used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "xpe_lean"
"""The name the lean attention is registered under with transformers' attention and mask interfaces."""

_SPAN = 1 << 16


def keep_mask(
    shape: tuple[int, ...], p: float, device: torch.device | None = None
) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask of ``shape`` that drops each element with probability ~``p``, and its scale.

    One 64-bit random word gives four 16-bit lanes; a lane below the threshold drops its element. The
    returned scale is ``1 / P(keep)`` for the quantised drop probability.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    lanes = words.view(torch.int16)[:n].view(shape)
    dropped = round(p * _SPAN)
    return lanes >= dropped - _SPAN // 2, _SPAN / (_SPAN - dropped)


class LeanDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`keep_mask` masks; identical to it in evaluation mode."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return input
        keep, scale = keep_mask(tuple(input.shape), self.p, input.device)
        return _Dropout.apply(input, keep, scale)


class _Dropout(torch.autograd.Function):
    """``x * keep * scale`` saving only the 1-byte mask (autograd would keep the float product too)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision inputs (as SDPA's CPU math path computes), unchanged otherwise."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Attention probabilities from pre-scaled queries and keys."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if bias is not None:
        scores.add_(bias)
    return torch.softmax(scores, dim=-1)


class _AttentionWithDropout(torch.autograd.Function):
    """softmax(q k^T * scale + bias) with dropout, times v; computed in fp32 as SDPA's CPU math path does.

    Saves q, k, v (B x H x L x D) and the boolean keep-mask (B x H x L x L bytes) instead of the fp32
    probabilities and masks; the backward pass recomputes the probabilities.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        p: float,
        scale: float,
    ) -> torch.Tensor:
        q_scaled = _wide(q) * scale
        k32, v32 = _wide(k).contiguous(), _wide(v).contiguous()
        probs = _scores(q_scaled, k32, bias)
        keep, keep_scale = keep_mask(tuple(probs.shape), p, probs.device)
        out = torch.matmul(probs.mul_(keep), v32).mul_(keep_scale)
        ctx.save_for_backward(q, k, v, bias, keep)
        ctx.scale, ctx.keep_scale = scale, keep_scale
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, bias, keep = ctx.saved_tensors
        q_scaled = _wide(q) * ctx.scale
        k32, v32 = _wide(k).contiguous(), _wide(v).contiguous()
        probs = _scores(q_scaled, k32, bias)
        grad = _wide(grad_out) * ctx.keep_scale
        grad_v = torch.matmul(probs.mul(keep).transpose(-1, -2), grad)
        grad_probs = torch.matmul(grad, v32.transpose(-1, -2)).mul_(keep)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        del probs, grad_probs
        grad_q = torch.matmul(grad_scores, k32).mul_(ctx.scale)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q_scaled)
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None, None


def lean_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention-interface entry: the lean kernel for CPU training, SDPA otherwise.

    SDPA's fused kernels handle dropout themselves on accelerators, and without dropout (evaluation)
    everywhere; grouped-query attention and position biases are left to SDPA too.
    """
    lean = dropout > 0.0 and query.device.type == "cpu" and query.shape[1] == key.shape[1]
    if not lean or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    bias = None
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            bias = torch.zeros(attention_mask.shape, dtype=torch.float32)
            bias.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
        else:
            bias = _wide(attention_mask)
    out = _AttentionWithDropout.apply(query, key, value, bias, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, lean_attention_forward)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def set_dropout_kernel(encoder: nn.Module, kernel: str) -> None:
    """Make ``encoder`` train with the budget's dropout kernel, ``lean`` or ``torch`` (either way round).

    ``lean`` swaps its ``nn.Dropout`` modules for :class:`LeanDropout` and, where it runs SDPA through
    transformers' attention interface, its attention for :func:`lean_attention_forward`. Evaluation is the
    same under both: no dropout, SDPA's fused kernels.
    """
    lean = kernel == "lean"
    old, new = (nn.Dropout, LeanDropout) if lean else (LeanDropout, nn.Dropout)
    for module in list(encoder.modules()):
        for attr, child in list(module.named_children()):
            if type(child) is old:
                setattr(module, attr, new(child.p).train(child.training))
    config = getattr(encoder, "config", None)
    attention = getattr(config, "_attn_implementation", None)
    wanted = {"sdpa": ATTENTION_NAME, ATTENTION_NAME: "sdpa"}.get(attention or "")
    if wanted is not None and (attention == "sdpa") == lean:
        encoder.set_attn_implementation(wanted)
