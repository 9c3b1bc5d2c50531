"""The shared training and inference loop for torch methods.

Texts are tokenised once per run into variable-length id arrays; batches are formed by *length grouping*
(shuffle, cut into mega-batches, sort each by length, slice) and padded dynamically to their own longest
member, which is what the authors' Trainer stack did and what keeps CPU time proportional to real tokens.

Fit state (trainable parameters, optimizer, scheduler, RNG, best checkpoint, history) is checkpointed
atomically at every evaluation (:mod:`xpe_bench.checkpoint`: safetensors + JSON, nothing that can execute code
when read back), so a killed run resumes from its last evaluation with the same batch order.

A non-finite training loss, gradient norm or dev score stops the fit with
:class:`~xpe_bench.errors.RunFailed`: a diverged run must never pass for a finished one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import get_cosine_with_hard_restarts_schedule_with_warmup, get_linear_schedule_with_warmup
from transformers.optimization import Adafactor

from xpe_bench import distributed
from xpe_bench.budgets import Budget
from xpe_bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from xpe_bench.convergence import selection_rank
from xpe_bench.errors import RunFailed
from xpe_bench.methods import ProgressReporter
from xpe_bench.roles import BUILTIN_ROLES, ResolvedRole, resolve_roles

MEGABATCH_FACTOR = 50
CHECKPOINT_NAME = "fit-checkpoint.safetensors"


@dataclass
class Encoded:
    """Token ids of a list of texts, unpadded."""

    ids: list[np.ndarray]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)


def encode(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[int], *, prefix: str, max_length: int
) -> Encoded:
    """Tokenise every text once (truncating to ``max_length`` including special tokens)."""
    if not texts:
        return Encoded(ids=[], labels=np.zeros(0, dtype=np.int64))
    batch = tokenizer(
        [prefix + text for text in texts],
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )
    ids = [np.asarray(x, dtype=np.int64) for x in batch["input_ids"]]
    return Encoded(ids=ids, labels=np.asarray(labels, dtype=np.int64))


def collate(
    encoded: Encoded, indices: Sequence[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad one batch to its longest member: (input_ids, attention_mask, labels)."""
    rows = [encoded.ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return (
        torch.from_numpy(input_ids),
        torch.from_numpy(mask),
        torch.from_numpy(encoded.labels[list(indices)]),
    )


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches: random mega-batches sorted by length inside, then batch order shuffled."""
    order = rng.permutation(len(lengths))
    mega = batch_size * MEGABATCH_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless stream of batches; epoch ``e`` uses its own generator so a resumed run sees the same order."""
    epoch = 0
    while True:
        yield from length_grouped_batches(lengths, batch_size, np.random.default_rng([seed, epoch]))
        epoch += 1


def inference_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches sorted by length (longest first) so padding is minimal; callers scatter results back."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the device the model actually runs on (not merely the one that exists)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_scores(
    model: nn.Module, encoded: Encoded, *, pad_id: int, batch_size: int, precision: str
) -> np.ndarray:
    """Class scores for every encoded example, in input order."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out: np.ndarray | None = None
    for batch in inference_batches(encoded.lengths, batch_size):
        input_ids, mask, _ = collate(encoded, batch, pad_id)
        with autocast(precision, device):
            logits = model(input_ids.to(device), mask.to(device))
        scores = logits.float().cpu().numpy()
        if out is None:
            out = np.empty((len(encoded), scores.shape[1]), dtype=np.float32)
        out[batch] = scores
    model.train(was_training)
    if out is None:
        raise ValueError("nothing to predict: the dataset is empty")
    return out


def builtin_roles(groups: Mapping[str, Sequence[nn.Parameter]], budget: Budget) -> dict[str, ResolvedRole]:
    """The roles of a fit that was given none (a method fitted outside the runner): the built-in ones."""
    unknown = sorted(set(groups) - set(BUILTIN_ROLES))
    if unknown:
        raise ValueError(f"roles {unknown} are not built in: pass the method's resolved roles to fit()")
    return resolve_roles("(unnamed)", {role: BUILTIN_ROLES[role] for role in groups}, budget)


def build_optimizer(
    groups: Mapping[str, Sequence[nn.Parameter]], budget: Budget, roles: Mapping[str, ResolvedRole]
) -> torch.optim.Optimizer:
    """One parameter group per role, with that role's resolved learning rate and weight decay."""
    undeclared = sorted(set(groups) - set(roles))
    if undeclared:
        raise ValueError(f"parameters in undeclared roles {undeclared} (declared: {sorted(roles)})")
    param_groups = []
    for role, group in groups.items():
        params = [p for p in group if p.requires_grad]
        if not params:
            continue
        resolved = roles[role]
        param_groups.append(
            {
                "params": params,
                "lr": resolved.learning_rate,
                "weight_decay": resolved.weight_decay,
                "role": role,
            }
        )
    if not param_groups:
        raise ValueError("the method exposes no trainable parameters")
    if budget.optimizer == "adafactor":
        return Adafactor(param_groups, scale_parameter=False, relative_step=False, warmup_init=False)
    return torch.optim.AdamW(param_groups)


def build_scheduler(optimizer: torch.optim.Optimizer, budget: Budget, total_steps: int) -> Any:
    warmup = int(budget.warmup_ratio * total_steps) if budget.warmup_steps is None else budget.warmup_steps
    if budget.schedule == "cosine_with_restarts":
        return get_cosine_with_hard_restarts_schedule_with_warmup(
            optimizer, warmup, total_steps, num_cycles=budget.schedule_cycles
        )
    if budget.schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))


def clip_grad(parameters: list[nn.Parameter], max_norm: float) -> float:
    """Clip to ``max_norm`` (no-op when it is 0 or less); returns the total gradient norm before clipping."""
    norm = nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else math.inf)
    return float(norm)


def _diverged(what: str, value: float, step: int, budget: Budget) -> RunFailed:
    return RunFailed(
        f"non-finite {what} ({value}) at step {step}: training diverged under budget {budget.name!r} "
        f"(learning rates {dict(budget.learning_rates)}); lower the learning rates or check the data"
    )


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@torch.inference_mode()
def evaluate(model: nn.Module, encoded: Encoded, *, pad_id: int, budget: Budget) -> dict[str, float]:
    scores = predict_scores(
        model, encoded, pad_id=pad_id, batch_size=budget.eval_batch_size, precision=budget.precision
    )
    if not np.isfinite(scores).all():
        raise RunFailed(
            f"non-finite dev scores ({int((~np.isfinite(scores)).sum())} values): the model diverged"
        )
    logits = torch.from_numpy(scores)
    labels = torch.from_numpy(encoded.labels)
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    return {"loss": loss, "accuracy": accuracy}


def _parallel_backward(
    model: nn.Module,
    train: Encoded,
    batch: np.ndarray,
    trainable: list[nn.Parameter],
    pad_id: int,
    budget: Budget,
    device: torch.device,
) -> float:
    """This process's share of one global batch (:mod:`xpe_bench.distributed`): backward of its summed loss
    over the global batch size, then gradients and loss summed across processes. Returns the global mean
    loss."""
    share = distributed.shard(batch)
    loss_sum = torch.zeros((), device=device)
    if len(share):
        input_ids, mask, labels = collate(train, share, pad_id)
        with autocast(budget.precision, device):
            logits = model(input_ids.to(device), mask.to(device))
        loss = nn.functional.cross_entropy(logits.float(), labels.to(device), reduction="sum")
        (loss / len(batch)).backward()
        loss_sum = loss.detach()
    for parameter in trainable:  # every process reduces the same tensors, even with an empty share
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    distributed.sum_across([parameter.grad for parameter in trainable] + [loss_sum])
    return float(loss_sum) / len(batch)


def checkpoint_step(workdir: Path) -> int | None:
    """The step a fit in ``workdir`` would resume from, or ``None`` when there is no readable checkpoint."""
    try:
        return int(load_checkpoint(workdir / CHECKPOINT_NAME)["loop"]["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def fit(
    model: nn.Module,
    parameter_groups: dict[str, list[nn.Parameter]],
    train: Encoded,
    dev: Encoded,
    *,
    budget: Budget,
    seed: int,
    pad_id: int,
    workdir: Path,
    progress: ProgressReporter,
    roles: Mapping[str, ResolvedRole] | None = None,
) -> dict[str, Any]:
    """Train ``model`` under ``budget``; leaves the selected (best-dev or last) weights loaded.

    ``roles``: the method's roles resolved under the budget (:attr:`FitContext.roles`); ``None`` resolves
    the built-in roles. Returns a JSON-able report: steps run, selected step, early-stopping step, dev
    history, timings.
    """
    if len(train) == 0:
        raise ValueError("no training examples: check the sources and the budget")
    torch.manual_seed(seed)
    total_steps = budget.total_steps(len(train))
    steps_per_epoch = math.ceil(len(train) / budget.batch_size)
    eval_every = budget.eval_every or steps_per_epoch
    optimizer = build_optimizer(
        parameter_groups, budget, builtin_roles(parameter_groups, budget) if roles is None else roles
    )
    scheduler = build_scheduler(optimizer, budget, total_steps)
    device = model_device(model)
    trainable = [p for group in parameter_groups.values() for p in group if p.requires_grad]

    continued = True
    state: dict[str, Any] = {
        "step": 0,
        "history": [],
        "best": None,
        "best_state": None,
        "bad_evals": 0,
        "running_loss": 0.0,
        "train_seconds": 0.0,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / CHECKPOINT_NAME
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint)  # CheckpointError if corrupt: the runner decides what to do
        model.load_state_dict(saved["trainable"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        # Checkpoints written before the running loss was saved lack it: a resumed run then restarts it.
        continued = "running_loss" in saved["loop"]
        state = {"running_loss": 0.0, "train_seconds": 0.0, **saved["loop"]}
    resumed_from = state["step"]
    # training time up to the checkpoint, from the sessions before this one (work after it is redone)
    seconds_before = float(state["train_seconds"])

    batches = epoch_batches(train.lengths, budget.batch_size, seed)
    for _ in range(state["step"]):  # replay the batch order up to where the checkpoint left off
        next(batches)

    model.train()
    progress.start("train", total_steps)
    progress.advance(state["step"])
    started = time.perf_counter()
    stopped_early_at: int | None = None
    parallel = distributed.world()[1] > 1
    while state["step"] < total_steps:
        batch = next(batches)
        if parallel:
            loss_value = _parallel_backward(model, train, batch, trainable, pad_id, budget, device)
        else:
            input_ids, mask, labels = collate(train, batch, pad_id)
            with autocast(budget.precision, device):
                logits = model(input_ids.to(device), mask.to(device))
            loss = nn.functional.cross_entropy(logits.float(), labels.to(device))
            loss_value = loss.item()
            if math.isfinite(loss_value):
                loss.backward()
        if not math.isfinite(loss_value):
            raise _diverged("training loss", loss_value, state["step"] + 1, budget)
        grad_norm = clip_grad(trainable, budget.grad_clip)
        if not math.isfinite(grad_norm):
            raise _diverged("gradient norm", grad_norm, state["step"] + 1, budget)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        running_loss = 0.9 * state["running_loss"] + 0.1 * loss_value if state["step"] > 1 else loss_value
        state["running_loss"] = running_loss  # checkpointed with the loop, so a resumed run continues it
        progress.advance(1, loss=running_loss)
        if state["step"] % eval_every == 0 or state["step"] == total_steps:
            metrics = evaluate(model, dev, pad_id=pad_id, budget=budget) if len(dev) else {}
            model.train()
            record = {
                "step": state["step"],
                "train_loss": running_loss,
                **{f"dev_{k}": v for k, v in metrics.items()},
            }
            state["history"].append(record)
            progress.advance(0, loss=running_loss, **{f"dev_{k}": v for k, v in metrics.items()})
            if metrics:
                improved = state["best"] is None or selection_rank(record) > selection_rank(state["best"])
                if improved:
                    state["best"] = record
                    state["best_state"] = trainable_state(model) if budget.select_best else None
                best_loss = (
                    min(h["dev_loss"] for h in state["history"][:-1])
                    if len(state["history"]) > 1
                    else math.inf
                )
                state["bad_evals"] = 0 if metrics["loss"] < best_loss else state["bad_evals"] + 1
            state["train_seconds"] = seconds_before + time.perf_counter() - started
            if distributed.is_main():  # every process holds the same state; one writes it
                save_checkpoint(
                    {
                        "trainable": trainable_state(model),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "loop": state,
                    },
                    checkpoint,
                )
            patience = budget.early_stopping_patience
            if (
                patience is not None
                and state["step"] >= budget.early_stopping_after * total_steps
                and state["bad_evals"] >= patience
            ):
                stopped_early_at = state["step"]
                break
    progress.finish()
    if budget.select_best and state["best_state"] is not None:
        model.load_state_dict(state["best_state"], strict=False)
    return {
        "total_steps": total_steps,
        "steps_run": state["step"],
        "resumed_from_step": resumed_from,
        "running_loss_continued": continued,
        "steps_per_epoch": steps_per_epoch,
        "epochs": state["step"] / steps_per_epoch,
        "selected_step": state["best"]["step"] if (budget.select_best and state["best"]) else state["step"],
        "stopped_early_at": stopped_early_at,
        "train_seconds_this_session": time.perf_counter() - started,
        "train_seconds_before_this_session": seconds_before,
        "history": state["history"],
    }
