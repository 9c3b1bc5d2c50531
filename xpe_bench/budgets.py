"""Budgets: the named, versioned contract that makes a comparison fair.

A budget fixes everything a method must *not* choose for itself: how many examples per language it sees,
how many optimizer steps, batch size, maximum length, evaluation schedule and the training recipe (optimizer,
per-role learning rates, schedule, warmup, clipping, early stopping, precision). Methods label their trainable
parameters with *roles* (:mod:`xpe_bench.roles`: the presets name ``prompt``, ``prompt_encoder``, ``head``
and ``backbone``; a method may declare others) and the budget assigns the learning rate per role, so two
methods under one budget train under the same recipe.

Example subsets depend only on the budget (``data_seed``) and the data, never on the method or the run seed:
every method and every seed of a comparison sees the same training examples and is scored on the same dev
and test items, which is what paired significance tests need. The run seed controls initialisation, dropout
and batch order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
import types
import typing
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from xpe_bench.errors import UserInputError
from xpe_bench.roles import ROLE_NAME

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A budget file's ``name``: it becomes part of run directory names, so no path separators or ``..``; no
``+`` either, which marks the overrides appended to a name (``quick+max_steps=7``)."""


@dataclass(frozen=True)
class Budget:
    name: str
    version: int
    description: str = ""
    # data
    train_per_lang: int | None = None
    """Training examples per source language; ``None`` = the whole split."""
    dev_per_lang: int | None = None
    test_per_lang: int | None = None
    data_seed: int = 0
    # compute
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int = 164
    eval_every: int | None = None
    """Evaluate on the sources' dev splits every N steps; ``None`` = once per epoch."""
    # recipe
    optimizer: Literal["adafactor", "adamw"] = "adafactor"
    learning_rates: Mapping[str, float] = field(default_factory=dict)
    weight_decay: float = 0.01
    schedule: Literal["cosine_with_restarts", "linear", "constant"] = "cosine_with_restarts"
    schedule_cycles: int = 3
    """Cosine cycles; the paper's "cosine with 2 restarts" is 3 cycles."""
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    """Warm-up length in steps, in place of ``warmup_ratio`` when set. With a ``constant`` schedule this makes
    a shorter budget's run the exact prefix of a longer one's (same data order, dropout masks and learning
    rates), which is how a learning curve measures what a budget of fewer steps would have reached."""
    grad_clip: float = 1.0
    select_best: bool = True
    """Keep the checkpoint with the best source-dev accuracy (the paper's model selection)."""
    early_stopping_patience: int | None = None
    """Stop when dev loss has not improved for this many evaluations ..."""
    early_stopping_after: float = 0.5
    """... but only after this fraction of the steps."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Compute precision: ``bf16`` runs forward passes under bf16 autocast (the paper's ``bf16=True``)."""
    frozen_backbone_dtype: Literal["fp32", "bf16"] = "fp32"
    """Storage of *frozen* weights: ``bf16`` holds every frozen parameter in bf16 (half the memory traffic)
    while trainable parameters and optimizer state stay fp32, for every method alike (an adapter inside the
    backbone leaves the rest of the backbone in bf16)."""
    dropout_kernel: Literal["torch", "lean"] = "torch"
    """How dropout inside the encoder is computed while training: ``torch`` (``nn.Dropout`` and SDPA) or
    ``lean`` (:mod:`xpe_bench.lean_dropout`: the same dropout distribution at a fraction of the CPU time and
    memory, with different random masks)."""

    _ADDED_LATER: ClassVar[Mapping[str, Any]] = {"dropout_kernel": "torch", "warmup_steps": None}
    """Fields added after results were stored: left out of :meth:`to_dict` (and so of the fingerprint) at
    these values, so the budgets of earlier results keep their fingerprints."""

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:  # the value checks below assume the right types
            raise UserInputError(f"budget {self.name!r}: " + "; ".join(problems))
        if self.version < 1:
            problems.append("version must be >= 1")
        if self.data_seed < 0:
            problems.append("data_seed must be >= 0")
        if (self.max_steps is None) == (self.epochs is None):
            problems.append("exactly one of max_steps and epochs must be set")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be >= 1")
        if self.epochs is not None and self.epochs <= 0:
            problems.append("epochs must be > 0")
        for name in ("train_per_lang", "dev_per_lang", "test_per_lang"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 or unset (all)")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append("batch sizes must be >= 1")
        if self.max_length < 8:
            problems.append("max_length must be >= 8")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append("eval_every must be >= 1 or unset (once per epoch)")
        if self.schedule_cycles < 1:
            problems.append("schedule_cycles must be >= 1")
        if self.weight_decay < 0:
            problems.append("weight_decay must be >= 0")
        if self.grad_clip < 0:
            problems.append("grad_clip must be >= 0 (0 = no clipping)")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append("early_stopping_patience must be >= 1 or unset (no early stopping)")
        if not 0 <= self.early_stopping_after <= 1:
            problems.append("early_stopping_after must be in [0, 1]")
        malformed = sorted(role for role in self.learning_rates if not ROLE_NAME.fullmatch(role))
        if malformed:
            problems.append(
                f"learning_rates has malformed role names {malformed}; a role is lower-case letters, digits "
                "and '_' (e.g. prompt, head, adapter)"
            )
        negative = sorted(role for role, rate in self.learning_rates.items() if rate < 0)
        if negative:  # 0 is allowed: it keeps a role at its initial (or source-stage) values
            problems.append(f"learning_rates must be >= 0, not for {negative}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            problems.append("warmup_steps must be >= 0 or unset (warmup_ratio applies)")
        if problems:
            raise UserInputError(f"budget {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["learning_rates"] = dict(sorted(self.learning_rates.items()))
        for name, value in self._ADDED_LATER.items():
            if data[name] == value:
                del data[name]
        return data

    @property
    def fingerprint(self) -> str:
        """SHA-256 of every field: two runs compare only if their budgets share it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def learning_rate(self, role: str) -> float:
        if role not in self.learning_rates:
            raise UserInputError(
                f"budget {self.name!r} sets no learning rate for parameter role {role!r} "
                f"(it sets {sorted(self.learning_rates)})"
            )
        return self.learning_rates[role]

    def total_steps(self, num_train_examples: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * num_train_examples / self.batch_size))

    def with_overrides(self, **overrides: Any) -> Budget:
        """A copy with CLI overrides applied; its name records them so it never passes for the preset."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        if "max_steps" in given:
            given["epochs"] = None
        elif "epochs" in given:
            given["max_steps"] = None
        suffix = ",".join(f"{k}={v}" for k, v in sorted(given.items()) if v is not None)
        return replace(self, name=f"{self.name}+{suffix}", **given)


def _type_problems(budget: Budget) -> list[str]:
    """Every field whose value does not fit its annotation (a TOML file can hold any type anywhere).

    Literal fields are checked here too: their annotation is the list of valid values."""
    hints = typing.get_type_hints(Budget)
    problems = []
    for f in fields(Budget):
        value, hint = getattr(budget, f.name), hints[f.name]
        if not _fits(value, hint):
            problems.append(f"{f.name} must be {_expected(hint)}, not {value!r} ({type(value).__name__})")
    return problems


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if origin is Mapping:
        key_type, value_type = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            _fits(k, key_type) and _fits(v, value_type) for k, v in value.items()
        )
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # bool is an int subclass in Python, never an integer here
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # TOML writes whole numbers as integers: 3 is a valid float
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint)


def _expected(hint: Any) -> str:
    """A reader's description of ``hint``: 'an integer or unset', 'a table of role -> number'."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        arms = [_expected(arm) for arm in typing.get_args(hint) if arm is not type(None)]
        return " or ".join(arms) + " or unset"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin is Mapping:
        return "a table of role -> number, e.g. { head = 1e-3 }"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(hint, str(hint))


def _from_mapping(raw: Mapping[str, Any], origin: str) -> Budget:
    known = {f.name for f in fields(Budget)}
    unknown = set(raw) - known
    if unknown:
        raise UserInputError(f"{origin}: unknown budget fields {sorted(unknown)}; valid: {sorted(known)}")
    if "name" not in raw or "version" not in raw:
        raise UserInputError(f"{origin}: a budget needs a name and a version")
    name = raw["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UserInputError(
            f"{origin}: budget name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it is part of run directory names)"
        )
    try:
        return Budget(**raw)
    except UserInputError as exc:
        raise UserInputError(f"{origin}: {exc}") from exc


def preset_names() -> list[str]:
    folder = resources.files("xpe_bench.resources").joinpath("budgets")
    return sorted(
        entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml")
    )


def load_budget(name_or_file: str) -> Budget:
    """A preset by name (:func:`preset_names`: ``smoke``, ``quick``, ``standard``, ``paper``,
    ``paper-target``) or a TOML file with the same fields."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise UserInputError(f"--budget: file {name_or_file!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UserInputError(f"--budget: {path} is not valid TOML: {exc}") from exc
        return _from_mapping(raw, str(path))
    if name_or_file not in preset_names():
        raise UserInputError(
            f"--budget: unknown budget {name_or_file!r}; use: {', '.join(preset_names())} or a .toml file"
        )
    entry = resources.files("xpe_bench.resources").joinpath("budgets", f"{name_or_file}.toml")
    return _from_mapping(tomllib.loads(entry.read_text(encoding="utf-8")), f"preset {name_or_file}")


def subset_indices(
    n_available: int, n_wanted: int | None, *, data_seed: int, lang: str, split: str
) -> np.ndarray:
    """Indices of the examples a budget keeps from one language's split (sorted, deterministic).

    Depends only on the sizes, the budget's data seed, the language and the split: never on the method.
    """
    if n_wanted is None or n_wanted >= n_available:
        return np.arange(n_available)
    key = zlib.crc32(f"{lang}/{split}".encode())
    rng = np.random.default_rng([data_seed, key])
    return np.sort(rng.choice(n_available, size=n_wanted, replace=False))
