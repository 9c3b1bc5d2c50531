"""Parameter roles: how a method labels its trainable parameters, and how a budget trains each label.

A method declares its roles (:attr:`xpe_bench.methods.MethodSpec.roles`: name -> :class:`RoleSpec`); the
budget gives each role a learning rate (``learning_rates = { prompt = 5e-3, ... }``). A role the budget does
not name takes the rate of the role its spec names as ``fallback``; that choice is recorded in the run
manifest (``method.roles``), and a role with neither is a one-line error before anything is written. What
used to be string tests in the core is declared per role: whether weight decay applies (the paper: none on
the prompt table) and whether ``--init-parts auto`` carries the role's parameters over from a source-stage
run (the paper: the prompt module, not the head).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xpe_bench.errors import UserInputError

if TYPE_CHECKING:
    from xpe_bench.budgets import Budget

ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A role's name: lower-case letters, digits and ``_`` (it is a key of a budget's ``learning_rates``)."""


@dataclass(frozen=True)
class RoleSpec:
    """What a method says about one of its parameter roles."""

    weight_decay: bool = True
    """Apply the budget's ``weight_decay`` to this role's parameters."""
    source_stage: bool = False
    """Carried over from the source-stage run by ``--regime supervised --init-parts auto`` (or ``prompt``)."""
    fallback: str | None = None
    """The budget role whose learning rate this role takes when the budget names none for it (recorded)."""
    description: str = ""


BUILTIN_ROLES: Mapping[str, RoleSpec] = {
    "prompt": RoleSpec(
        weight_decay=False, source_stage=True, description="soft-prompt tables (the paper: no weight decay)"
    ),
    "prompt_encoder": RoleSpec(source_stage=True, description="networks that produce a prompt (XPE's MLP)"),
    "head": RoleSpec(description="the classification head"),
    "backbone": RoleSpec(description="the backbone's own weights (full fine-tuning)"),
}
"""The roles every preset budget names; a method that declares no roles of its own gets these."""


@dataclass(frozen=True)
class ResolvedRole:
    """One role under one budget: the learning rate and weight decay it trains with, and why."""

    learning_rate: float
    weight_decay: float
    source_stage: bool
    rate_from: str
    """The budget role the learning rate was read from: the role itself, or its fallback."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "source_stage": self.source_stage,
            "rate_from": self.rate_from,
        }


def check_roles(owner: str, roles: Mapping[str, RoleSpec]) -> None:
    """Raise ``ValueError`` (a plugin's mistake, not the user's) for a role declaration that cannot work."""
    for name, spec in roles.items():
        if not ROLE_NAME.fullmatch(name):
            raise ValueError(f"{owner}: role name {name!r} must match {ROLE_NAME.pattern}")
        if spec.fallback is not None and (spec.fallback == name or not ROLE_NAME.fullmatch(spec.fallback)):
            raise ValueError(f"{owner}: role {name!r} has an invalid fallback {spec.fallback!r}")


def resolve_roles(method: str, roles: Mapping[str, RoleSpec], budget: Budget) -> dict[str, ResolvedRole]:
    """Each declared role's learning rate and weight decay under ``budget``.

    A role the budget names takes its own rate; one it does not name takes its fallback's rate (one step,
    no chains, so the record says exactly where every rate came from); otherwise :class:`UserInputError`.
    """
    resolved: dict[str, ResolvedRole] = {}
    missing: list[str] = []
    for name, spec in roles.items():
        if name in budget.learning_rates:
            source = name
        elif spec.fallback is not None and spec.fallback in budget.learning_rates:
            source = spec.fallback
        else:
            fallback = f" or its fallback {spec.fallback!r}" if spec.fallback else ""
            missing.append(f"{name!r}{fallback}")
            continue
        resolved[name] = ResolvedRole(
            learning_rate=budget.learning_rates[source],
            weight_decay=budget.weight_decay if spec.weight_decay else 0.0,
            source_stage=spec.source_stage,
            rate_from=source,
        )
    if missing:
        raise UserInputError(
            f"budget {budget.name!r} sets no learning rate for method {method!r}'s role(s) "
            f"{', '.join(missing)} (it sets {sorted(budget.learning_rates)}); add them to learning_rates"
        )
    return resolved
