"""Fit checkpoints in a format that cannot execute code when read back.

A checkpoint of the training loop holds tensors (trainable parameters, the best state so far, optimizer
moments, the torch RNG state) and plain values (step, dev history, optimizer hyper-parameters, scheduler
counters). Both go into one ``.safetensors`` file: the tensors as tensors, everything else as strict JSON in
the file's metadata. Reading it parses a JSON header and raw tensor bytes — unlike ``torch.load`` of a pickle,
a planted file can at worst fail to parse, never run code. One file, written atomically, so the tensors and
the values always belong to the same step.

Nested values are flattened: a tensor found at ``state["optimizer"]["state"][0]["exp_avg"]`` is stored as
tensor ``/optimizer/state/0/exp_avg`` and replaced in the JSON tree by ``{"__tensor__": <that name>}``.
Integer dictionary keys (optimizer state is keyed by parameter index) are kept as ``{"__int_keys__": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from xpe_bench.store import atomic_write_bytes

FORMAT = "xpe-bench-fit-checkpoint/1"
_TENSOR = "__tensor__"
_INT_KEYS = "__int_keys__"
_TUPLE = "__tuple__"


class CheckpointError(Exception):
    """A checkpoint file that cannot be read: corrupt, foreign or of another format (names the file)."""


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        # safetensors refuses shared or non-contiguous storage: store an independent contiguous copy.
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {_TENSOR: path}
    if isinstance(value, Mapping):
        if value and all(isinstance(k, int) for k in value):
            return {_INT_KEYS: {str(k): _flatten(v, f"{path}/{k}", tensors) for k, v in value.items()}}
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"checkpoint value at {path!r} has keys that are neither all str nor all int")
        return {k: _flatten(v, f"{path}/{k}", tensors) for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE: [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint value at {path!r} has type {type(value).__name__}, which is not storable")


def _unflatten(value: Any, tensors: Mapping[str, torch.Tensor], where: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            name = value[_TENSOR]
            if name not in tensors:
                raise CheckpointError(f"{where}: its metadata names tensor {name!r}, which the file lacks")
            return tensors[name]
        if set(value) == {_INT_KEYS}:
            return {int(k): _unflatten(v, tensors, where) for k, v in value[_INT_KEYS].items()}
        if set(value) == {_TUPLE}:
            return tuple(_unflatten(v, tensors, where) for v in value[_TUPLE])
        return {k: _unflatten(v, tensors, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors, where) for v in value]
    return value


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Write ``state`` (nested dicts, lists, tuples, tensors and JSON scalars) atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(dict(state), "", tensors)
    # allow_nan=False: a checkpoint never holds NaN (the loop stops on non-finite values before saving).
    metadata = {"format": FORMAT, "tree": json.dumps(tree, allow_nan=False, separators=(",", ":"))}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`CheckpointError` if it is not one."""
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if not 0 < header_size <= 100_000_000:
                raise CheckpointError(f"{path}: not a safetensors file (header size {header_size})")
            header = json.loads(handle.read(header_size))
        metadata = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{path}: not an xpe-bench fit checkpoint (no metadata)")
        if metadata.get("format") != FORMAT:
            raise CheckpointError(
                f"{path}: not an xpe-bench fit checkpoint (format {metadata.get('format')!r}, "
                f"expected {FORMAT})"
            )
        tree = json.loads(metadata["tree"])
        tensors = load_file(path)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: unreadable fit checkpoint ({type(exc).__name__}: {exc})") from exc
    return _unflatten(tree, tensors, path)
