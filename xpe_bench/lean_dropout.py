"""The ``lean`` dropout kernel: training-time dropout inside the encoder at a fraction of torch's CPU cost.

Why it exists. The recipe trains with dropout active in the (frozen) backbone, as the XPE authors' code
did. On CPU that costs more than it looks (profile in ``benchmarks/RESULTS.md``):

* torch draws every dropout mask with ``bernoulli_``, one float per element: 15% of an fp32 training step
  and 24% of a fast-mode step on the 2-core reference machine;
* attention dropout forces ``scaled_dot_product_attention`` onto its unfused math path, which also keeps
  the B x H x L x L scores, probabilities and masks of every layer for the backward pass (most of the
  memory of a training step).

``lean`` keeps the same dropout distribution and changes only how it is computed:

* masks come from 16-bit random words (:func:`drop_mask`): an element is dropped with probability
  ``round(p * 65536) / 65536`` (0.1000061 for p = 0.1) and kept ones are scaled by the exact inverse of the
  keep rate, so the expectation is unchanged;
* attention with dropout runs as one autograd function (:class:`_AttentionWithDropout`) that saves fp32
  copies of q, k, v and a 1-byte mask, and recomputes the probabilities in the backward pass (one extra
  L x L product, under 3% of an encoder layer's FLOPs). Without dropout (evaluation) it hands over to SDPA's
  fused kernels.

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


def drop_mask(
    shape: tuple[int, ...], p: float, device: torch.device | None = None
) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` that is True (drop) with probability ~``p``, and the scale of kept ones.

    One 64-bit random word gives four 16-bit lanes; a lane below the threshold drops its element. The
    returned scale is ``1 / P(keep)`` for the quantised drop probability.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    lanes = words.view(torch.int16)[:n].view(shape)
    dropped = round(p * _SPAN)
    return lanes < dropped - _SPAN // 2, _SPAN / (_SPAN - dropped)


class LeanDropout(nn.Dropout):
    """``nn.Dropout`` with :func:`drop_mask` masks; identical to it in evaluation mode."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return input
        drop, scale = drop_mask(tuple(input.shape), self.p, input.device)
        return _Dropout.apply(input, drop, scale)


class _Dropout(torch.autograd.Function):
    """``x`` zeroed where ``drop``, times ``scale``; saves only the 1-byte mask."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, drop: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return x.masked_fill(drop, 0).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0).mul_(ctx.scale), None, None


def _packed(x: torch.Tensor, scale: float = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x * scale`` as a new contiguous tensor of ``dtype`` (default: fp32, or ``x``'s fp64), in one pass."""
    if dtype is None:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.mul(x, scale, out=torch.empty(x.shape, dtype=dtype, device=x.device))


def _probabilities(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T + mask) from pre-scaled queries; a boolean ``mask`` is True where attention is allowed,
    any other is added to the scores."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None and mask.dtype == torch.bool:
        scores.masked_fill_(mask.logical_not(), torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores.add_(mask)
    return torch.softmax(scores, dim=-1)


def _heads_last(x: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """``x * scale`` for a B x H x L x D ``x``, written as a contiguous B x L x H x D tensor of ``dtype``.

    That is the layout the attention's linear layers produce and consume, so neither the output nor the
    gradients need another copy on their way back to them.
    """
    b, h, length, d = x.shape
    out = torch.empty((b, length, h, d), dtype=dtype, device=x.device)
    torch.mul(x, scale, out=out.transpose(1, 2))
    return out


class _AttentionWithDropout(torch.autograd.Function):
    """softmax(q k^T * scale + mask) with dropout, times v; in fp32 (fp64 for fp64 inputs), as SDPA's CPU
    math path computes. Takes q, k, v as B x H x L x D and returns B x L x H x D (contiguous, input dtype).

    Saves the fp32 q (scaled), k and v and the boolean drop-mask (B x H x L x L bytes) instead of the fp32
    probabilities and masks; the backward pass recomputes the probabilities.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        p: float,
        scale: float,
    ) -> torch.Tensor:
        q_scaled, k_wide, v_wide = _packed(q, scale), _packed(k), _packed(v)
        probs = _probabilities(q_scaled, k_wide, mask)
        drop, keep_scale = drop_mask(tuple(probs.shape), p, probs.device)
        out = torch.matmul(probs.masked_fill_(drop, 0), v_wide)
        ctx.save_for_backward(q_scaled, k_wide, v_wide, mask, drop)
        ctx.scale, ctx.keep_scale, ctx.dtypes = scale, keep_scale, (q.dtype, k.dtype, v.dtype)
        return _heads_last(out, q.dtype, keep_scale)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q_scaled, k_wide, v_wide, mask, drop = ctx.saved_tensors
        q_dtype, k_dtype, v_dtype = ctx.dtypes
        probs = _probabilities(q_scaled, k_wide, mask)
        grad = _packed(grad_out.transpose(1, 2), ctx.keep_scale, q_scaled.dtype)
        grad_v = _heads_last(torch.matmul(probs.masked_fill(drop, 0).transpose(-1, -2), grad), v_dtype)
        grad_probs = torch.matmul(grad, v_wide.transpose(-1, -2)).masked_fill_(drop, 0)
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        del probs, grad_probs
        grad_q = _heads_last(torch.matmul(grad_scores, k_wide), q_dtype, ctx.scale)
        grad_k = _heads_last(torch.matmul(grad_scores.transpose(-1, -2), q_scaled), k_dtype)
        heads_first = (t.transpose(1, 2) for t in (grad_q, grad_k, grad_v))
        return *heads_first, None, None, None


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
    # The same mask object goes to every layer: kept as it is (1 byte a position if boolean), not converted.
    return _AttentionWithDropout.apply(query, key, value, attention_mask, dropout, scale), None


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
    attention = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
    wanted = ATTENTION_NAME if lean else "sdpa"
    if attention in ("sdpa", ATTENTION_NAME) and attention != wanted:
        encoder.set_attn_implementation(wanted)
