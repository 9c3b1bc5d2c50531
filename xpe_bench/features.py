"""Frozen-backbone sentence features, computed once per (backbone, settings, texts) and cached on disk.

Methods that never change the backbone (``head-only``, ``zero-shot``) only need its outputs. Computing them is
almost all of their cost, so they are cached under ``$XPE_BENCH_CACHE/features/`` keyed by the backbone's
weights hash, the pooling, the maximum length, the text prefix and the SHA-256 of the exact texts: a second
seed, a second run or another method over the same texts costs a file read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from xpe_bench.backbones import RANDOM_INIT_SHA256
from xpe_bench.training import autocast, collate, encode, inference_batches

if TYPE_CHECKING:
    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget

Pooling = Literal["mean", "first"]


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Sentence vectors from token states: masked mean, or the first position (``<s>``)."""
    if pooling == "first":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _key(backbone: Backbone, texts: Sequence[str], settings: Sequence[object]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([backbone.weights_sha256, *settings]).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


@torch.inference_mode()
def compute_features(
    backbone: Backbone, texts: Sequence[str], *, pooling: Pooling, budget: Budget, prefix: str | None = None
) -> np.ndarray:
    """``[len(texts), hidden]`` float32 features from the frozen backbone (in eval mode: no dropout).

    The backbone is held in the budget's ``frozen_backbone_dtype`` and run under its ``precision``.
    """
    prefix = backbone.text_prefix if prefix is None else prefix
    encoded = encode(backbone.tokenizer, texts, [0] * len(texts), prefix=prefix, max_length=budget.max_length)
    model = backbone.model
    model.to(torch.bfloat16 if budget.frozen_backbone_dtype == "bf16" else torch.float32)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.empty((len(texts), backbone.hidden_size), dtype=np.float32)
    for batch in inference_batches(encoded.lengths, budget.eval_batch_size):
        input_ids, mask, _ = collate(encoded, batch, backbone.tokenizer.pad_token_id)
        input_ids, mask = input_ids.to(device), mask.to(device)
        with autocast(budget.precision, device):
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        out[batch] = pool(hidden.float(), mask, pooling).cpu().numpy()
    model.train(was_training)
    return out


def cached_features(
    backbone: Backbone,
    texts: Sequence[str],
    cache_dir: Path,
    *,
    pooling: Pooling,
    budget: Budget,
) -> np.ndarray:
    """:func:`compute_features`, read from / written to the on-disk cache (atomically)."""
    if backbone.weights_sha256 in {RANDOM_INIT_SHA256, "unknown"}:  # no stable identity: never cache
        return compute_features(backbone, texts, pooling=pooling, budget=budget)
    settings = [
        pooling,
        budget.max_length,
        budget.precision,
        budget.frozen_backbone_dtype,
        backbone.text_prefix,
    ]
    folder = cache_dir / "features" / backbone.weights_sha256[:16]
    path = folder / f"{_key(backbone, texts, settings)}.npy"
    if path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts), backbone.hidden_size):
                return cached
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)  # a corrupt cache entry is recomputed (the cache is only a cache)
    features = compute_features(backbone, texts, pooling=pooling, budget=budget)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temp_files(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.getpid()}.", suffix=".npy.tmp")
    os.fchmod(fd, 0o644)  # readable like every other cached file (mkstemp creates 0600)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, features)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return features


def _remove_orphaned_temp_files(folder: Path) -> None:
    """Delete temporary files whose writer (the PID in their name) is no longer alive: killed writes."""
    for tmp in folder.glob(".*.npy.tmp"):
        pid = tmp.name.split(".")[1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
