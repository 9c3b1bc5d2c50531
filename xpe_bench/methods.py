"""The method interface every plugin implements (see ``docs/plugins.md`` for a worked example).

Life cycle, driven by :mod:`xpe_bench.runner`:

1. ``method = spec.create(options)`` — options are the spec's defaults updated with the user's
   ``--option key=value`` values; they are recorded in the run manifest.
2. ``method.setup(backbone, task)`` — build the model around the loaded backbone.
3. Either ``method.fit(context)`` (train under the budget, on the sources' train split, selecting on their
   dev split) or ``method.load_state_dict(state)`` (a finished run is being reused or re-predicted).
4. ``method.predict(dataset, budget)`` — class scores ``[n, num_labels]`` (higher is more likely; logits
   are fine) for any split of any language. Predicted label = argmax.
5. ``method.state_dict()`` — the trained state (tensors only), saved as ``state.safetensors``; methods that
   train nothing return ``{}``.
6. ``method.parameter_report()`` — total and trainable parameters, per module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from xpe_bench.roles import BUILTIN_ROLES, ResolvedRole, RoleSpec, check_roles

if TYPE_CHECKING:
    import datasets
    import numpy as np
    import torch

    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget
    from xpe_bench.tasks import TaskSpec


class ProgressReporter(Protocol):
    """What the training loop reports through; the CLI backs it with rich progress bars."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, steps: int = 1, **info: Any) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, **info: Any) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class FitContext:
    """Everything a method may use to train. Nothing about the targets is in here, by design."""

    train: datasets.Dataset
    """Source-language training examples under the budget (columns lang, id, text, label)."""
    dev: datasets.Dataset
    """Source-language dev examples: the only data model selection may look at."""
    budget: Budget
    seed: int
    workdir: Path
    """A private folder for checkpoints; a fit interrupted and restarted with the same workdir resumes."""
    progress: ProgressReporter = field(default_factory=SilentProgress)
    roles: Mapping[str, ResolvedRole] | None = None
    """The method's declared roles resolved under the budget (learning rate, weight decay), as the runner
    recorded them in the manifest; ``None`` (a method fitted outside the runner): the built-in roles."""


@dataclass(frozen=True)
class ParameterReport:
    total: int
    trainable: int
    modules: Mapping[str, tuple[int, int]]
    """Module name -> (total, trainable) parameters."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "trainable": self.trainable,
            "trainable_percent": 100.0 * self.trainable / self.total if self.total else 0.0,
            "modules": {name: {"total": t, "trainable": r} for name, (t, r) in self.modules.items()},
        }


def parameter_report(modules: Mapping[str, torch.nn.Module]) -> ParameterReport:
    """Count parameters per named module and per direct child (``encoder.embeddings``, ``prompt.spt_table``).

    Shared parameters are counted once, where first met. ``modules`` holds the top-level rows; the
    breakdown rows (with a dot in the name) add up to their top-level row.
    """
    seen: set[int] = set()

    def count(parameters: list[torch.nn.Parameter]) -> tuple[int, int]:
        total = trainable = 0
        for parameter in parameters:
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            total += parameter.numel()
            trainable += parameter.numel() if parameter.requires_grad else 0
        return total, trainable

    rows: dict[str, tuple[int, int]] = {}
    for name, module in modules.items():
        parts: dict[str, tuple[int, int]] = {}
        for param_name, parameter in module.named_parameters(recurse=False):
            parts[f"{name}.{param_name}"] = count([parameter])
        for child_name, child in module.named_children():
            parts[f"{name}.{child_name}"] = count(list(child.parameters()))
        parts = {k: v for k, v in parts.items() if v[0]}
        rows[name] = (sum(t for t, _ in parts.values()), sum(r for _, r in parts.values()))
        if len(parts) > 1:
            rows.update(parts)
    top = [v for k, v in rows.items() if "." not in k]
    return ParameterReport(total=sum(t for t, _ in top), trainable=sum(r for _, r in top), modules=rows)


class Method(ABC):
    """A cross-lingual transfer method. Subclass this (or :class:`xpe_bench.modeling.TorchMethod`)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    @abstractmethod
    def setup(self, backbone: Backbone, task: TaskSpec) -> None:
        """Build the model for ``task`` around ``backbone``."""

    def fit(self, context: FitContext) -> dict[str, Any]:
        """Train; return a JSON-able report (steps, history, selected step...). Default: nothing to train.

        A method that resumes interrupted training may report ``train_seconds_before_this_session`` (its
        training time in earlier sessions, up to where it resumed): the run's train time adds it."""
        return {"trained": False}

    @abstractmethod
    def predict(self, data: datasets.Dataset, budget: Budget) -> np.ndarray:
        """Scores ``[len(data), num_labels]`` as float32; argmax is the prediction."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no trainable state, got {len(state)} tensors")

    def parameter_roles(self) -> dict[str, str]:
        """State key -> the role it trains in (after :meth:`setup`). ``--init-parts auto`` carries over the
        keys whose role is a source-stage role; keys it does not name are never carried by ``auto``."""
        return {}

    @abstractmethod
    def parameter_report(self) -> ParameterReport:
        """Total and trainable parameters, per module."""


class OptionRule(Protocol):
    """What values one method option accepts, checked before anything of a run is written."""

    description: str
    """What is valid, for the error message and the methods listing (e.g. ``"in [0, 1]"``)."""

    def allows(self, value: Any) -> bool: ...


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    @property
    def description(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def allows(self, value: Any) -> bool:
        return value in self.values


@dataclass(frozen=True)
class Range:
    """A number between bounds; ``NaN`` is never in range."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    """Exclude ``high`` itself (a dropout rate of 1 drops everything)."""

    @property
    def description(self) -> str:
        if self.high is None:
            return f">= {self.low}"
        close = ")" if self.high_open else "]"
        return f"in [{self.low}, {self.high}{close}" if self.low is not None else f"<= {self.high}"

    def allows(self, value: Any) -> bool:
        if self.low is not None and not value >= self.low:
            return False
        if self.high is not None:
            return bool(value < self.high if self.high_open else value <= self.high)
        return True


@dataclass(frozen=True)
class Check:
    """Any other condition, with the text that says what it wants."""

    predicate: Callable[[Any], bool]
    description: str

    def allows(self, value: Any) -> bool:
        return self.predicate(value)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: what ``xpe-bench methods`` lists and ``--method`` selects."""

    name: str
    description: str
    factory: Callable[[Mapping[str, Any]], Method]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Every option the method accepts, with its default; unknown options are rejected."""
    trains: bool = True
    target_stage: Mapping[str, Any] = field(default_factory=dict)
    """Option values for training on a target language (supervised / in-language regimes), e.g. the
    paper's XPE dropout of 0 in the target stage. Explicit user options still win."""
    version: str = "1"
    """Bump when a change alters results, so stored runs are not silently reused."""
    rules: Mapping[str, OptionRule] = field(default_factory=dict)
    """Option -> what values it accepts (:class:`Choice`, :class:`Range`, :class:`Check`); options without a
    rule accept any value of their default's type."""

    added_later: Mapping[str, Any] = field(default_factory=dict)
    """Options added after results were stored, with the value that reproduces those results: left out of
    the run identity at that value (:meth:`identity_options`), so earlier runs keep their keys."""
    help: Mapping[str, str] = field(default_factory=dict)
    """Option -> one line on what it does, shown by ``xpe-bench methods NAME``."""
    roles: Mapping[str, RoleSpec] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    """The parameter roles the method trains (:mod:`xpe_bench.roles`); the budget gives each a learning
    rate. Every one must resolve under the budget of a run, so declare only the roles the method uses."""

    def __post_init__(self) -> None:
        check_roles(f"method {self.name!r}", self.roles)
        stray = set(self.rules) - set(self.defaults)
        if stray:
            raise ValueError(f"method {self.name!r}: rules for options it does not have: {sorted(stray)}")
        undocumented = set(self.help) - set(self.defaults)
        if undocumented:
            raise ValueError(f"method {self.name!r}: help for options it lacks: {sorted(undocumented)}")
        broken = [key for key, rule in self.rules.items() if not rule.allows(self.defaults[key])]
        if broken:
            raise ValueError(f"method {self.name!r}: defaults break their own rules: {sorted(broken)}")

    def create(self, options: Mapping[str, Any] | None = None) -> Method:
        return self.factory(self.resolve_options(options or {}))

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        from xpe_bench.errors import UserInputError

        unknown = set(options) - set(self.defaults)
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise UserInputError(
                f"method {self.name!r} has no option(s) {sorted(unknown)}; options (defaults): {valid}"
            )
        resolved = dict(self.defaults)
        for key, value in options.items():
            default = self.defaults[key]
            resolved[key] = _coerce(value, default, f"{self.name}.{key}")
            rule = self.rules.get(key)
            if rule is not None and not rule.allows(resolved[key]):
                raise UserInputError(f"option {self.name}.{key}: {value!r}; valid: {rule.description}")
        return resolved

    def identity_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved options as they enter the run identity: :attr:`added_later` ones at their old value
        are left out (the manifest still records every option)."""
        return {
            key: value
            for key, value in options.items()
            if key not in self.added_later or value != self.added_later[key]
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "trains": self.trains,
            "version": self.version,
            "options": dict(self.defaults),
            "valid": {key: rule.description for key, rule in self.rules.items()},
            "roles": sorted(self.roles) if self.trains else [],
            "help": dict(self.help),
        }

    def describe_options(self) -> list[dict[str, Any]]:
        """One row per option: its type (that of its default, which command-line values convert to), default,
        what values are valid and its help."""
        return [
            {
                "option": key,
                "type": _type_name(default),
                "default": default,
                "valid": self.rules[key].description if key in self.rules else f"any {_type_name(default)}",
                "help": self.help.get(key, ""),
            }
            for key, default in self.defaults.items()
        ]


def _type_name(default: Any) -> str:
    if isinstance(default, list | tuple):
        return f"list of {type(default[0]).__name__ if default else 'str'}"
    return type(default).__name__


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert a command-line string to the type of the option's default.

    A list (or tuple) option takes a comma list (``query,value``), each item converted to the type of the
    default's items (strings for an empty default)."""
    from xpe_bench.errors import UserInputError

    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    if isinstance(default, list | tuple):
        item = default[0] if default else ""
        items = [_coerce(part.strip(), item, where) for part in value.split(",") if part.strip()]
        return type(default)(items)
    try:
        if isinstance(default, bool):
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return value.lower() in {"true", "1", "yes"}
        return type(default)(value)
    except ValueError as exc:
        raise UserInputError(f"option {where}: {value!r} is not a valid {type(default).__name__}") from exc
