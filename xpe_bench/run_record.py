"""The run record: what ``<run>/manifest.json`` holds, as a typed, versioned value owned by this module.

One record per run. It names the run's configuration (the *identity*, and the key hashed from it), describes
what the run was made with (task, method, backbone, budget, data, package versions, hardware, command) and
says where the run stands: ``status`` goes ``created`` → ``training`` → ``trained`` → ``evaluating`` →
``complete``, or ``failed`` (with the error). A compact file (:mod:`xpe_bench.compact`) embeds the same
record as ``"manifest"``.

This module is the only place that knows the record's JSON layout. Everything else reads a record's
attributes, and the runner changes one only through its state changes (:meth:`RunRecord.training`,
:meth:`~RunRecord.trained`, :meth:`~RunRecord.evaluating`, :meth:`~RunRecord.complete`,
:meth:`~RunRecord.failed`, ...), each returning a new record for the store to write
(:meth:`xpe_bench.store.RunStore.write_record`).

Reading is validation. :meth:`RunRecord.from_dict` checks the schema version, every field's presence and
type (unknown fields included: a record this code cannot write back unchanged is refused), the status and
the key against the identity, and raises :class:`~xpe_bench.errors.CorruptRunFile` naming the file. The
layout is schema :data:`RECORD_SCHEMA` as written since the first release; fields added later
(``convergence``, ``failure``, ``init_from``, ``recovered``, ``method.parameters``, ``method.roles``,
``data.dev_examples``, ``timings.backbone_load_seconds``) are optional, so ``from_dict(d).to_dict() == d``
for every stored run and committed compact file (tested). A change of layout is a new schema version.

What a consumer decides on is a typed attribute. The purely descriptive rest (the task's description, the
backbone's sizes, the budget's other settings, versions, hardware) and what plugins report (the fit report,
the parameter report) are kept as the JSON objects they were written as. Treat them as read-only: reading,
writing and the state changes copy them, so editing a dict from :meth:`RunRecord.to_dict`, or one that was
passed in, never changes a record.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from xpe_bench.convergence import Convergence, assess
from xpe_bench.errors import CorruptRunFile

RECORD_SCHEMA = 1
"""The layout version this code reads and writes (the record's ``schema`` field)."""
Status = Literal["created", "training", "trained", "evaluating", "complete", "failed"]
STATUSES: tuple[Status, ...] = get_args(Status)
RECOVERED = "the run record was rebuilt from the trained state; timings were lost"


def canonical_json(data: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is: equal values give equal text (what keys are hashed from)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_key(identity: Mapping[str, Any]) -> str:
    """The run key: SHA-256 of the identity's canonical JSON."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# reading JSON objects field by field ------------------------------------------------------------------------
class _Malformed(ValueError):
    """One field of a record is missing, of the wrong type or unknown (the message names it, dotted)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Kind = Literal["string", "integer", "number", "object", "strings", "objects"]
_KINDS: dict[_Kind, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda value: isinstance(value, str)),
    "integer": ("an integer", _is_int),
    "number": ("a number", lambda value: _is_int(value) or isinstance(value, float)),
    "object": ("a JSON object", lambda value: isinstance(value, dict)),
    "strings": (
        "a list of strings",
        lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
    ),
    "objects": (
        "a list of JSON objects",
        lambda value: isinstance(value, list) and all(isinstance(v, dict) for v in value),
    ),
}


class _Fields:
    """The fields of one JSON object of a record; every complaint names the field (``task.labels``)."""

    def __init__(self, data: Any, where: str, known: Sequence[str] | None = None) -> None:
        """``known``: the object's only allowed fields (``None``: any, for a descriptive object)."""
        if not isinstance(data, dict):
            raise _Malformed(f"{where} is not a JSON object")
        unknown = [name for name in data if known is not None and name not in known]
        if unknown:
            raise _Malformed(f"unknown field {', '.join(self._join(where, name) for name in unknown)}")
        self.data = data
        self.where = where

    @staticmethod
    def _join(where: str, name: str) -> str:
        return f"{where}.{name}" if where else name

    def get(self, name: str, kind: _Kind, *, optional: bool = False, nullable: bool = False) -> Any:
        """The field's value, checked against ``kind`` (lists come back as tuples, objects as copies);
        ``None`` when it is ``optional`` and absent, or ``nullable`` and null."""
        if name not in self.data:
            if optional:
                return None
            raise _Malformed(f"missing {self._join(self.where, name)}")
        value = self.data[name]
        if value is None and nullable:
            return None
        what, check = _KINDS[kind]
        if not check(value):
            raise _Malformed(f"{self._join(self.where, name)} is {_json_type(value)}, not {what}")
        if kind in ("strings", "objects"):
            return tuple(copy.deepcopy(value))
        return copy.deepcopy(value) if kind == "object" else value

    def fields(self, name: str, known: Sequence[str] | None = None) -> _Fields:
        """A nested object's fields (``known``: as for the constructor)."""
        if name not in self.data:
            raise _Malformed(f"missing {self._join(self.where, name)}")
        return _Fields(self.data[name], self._join(self.where, name), known)

    def optional_fields(self, name: str, known: Sequence[str] | None = None) -> _Fields | None:
        """A nested object's fields, or ``None`` when it is absent."""
        return self.fields(name, known) if name in self.data else None

    def rest(self, typed: Sequence[str]) -> dict[str, Any]:
        """A copy of the fields other than ``typed`` (a descriptive object's untyped part)."""
        return {name: copy.deepcopy(value) for name, value in self.data.items() if name not in typed}


def _json_type(value: Any) -> str:
    """What a JSON value is, for a complaint about it."""
    if value is None:
        return "null"
    for kind, what in ((bool, "a boolean"), (str, "a string"), (int, "an integer"), (float, "a number")):
        if isinstance(value, kind):
            return what
    return "a JSON object" if isinstance(value, dict) else "a list"


def _json(value: Any) -> Any:
    """A deep copy with tuples as lists: a record's value as JSON writes it."""
    if isinstance(value, Mapping):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    return value


# the parts of a record --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskRecord:
    """The task as the run saw it (:meth:`xpe_bench.tasks.TaskSpec.describe`)."""

    name: str
    version: int
    labels: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    """The rest of its description as written: description, number of languages, groups, hub id,
    definition SHA-256, and labels per language where the task has them."""

    _TYPED = ("name", "version", "labels")

    @classmethod
    def _read(cls, fields: _Fields) -> TaskRecord:
        return cls(
            name=fields.get("name", "string"),
            version=fields.get("version", "integer"),
            labels=fields.get("labels", "strings"),
            details=fields.rest(cls._TYPED),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            **_json(self.details),
        }


@dataclass(frozen=True)
class MethodRecord:
    """The method: name, version, every option it ran with, and what the run reported about it."""

    name: str
    version: str
    options: Mapping[str, Any]
    """All of them, defaults included (the identity may leave out options added later, at their old value)."""
    parameters: Mapping[str, Any] | None = None
    """The parameter report (total, trainable, per module); absent from records an earlier release wrote
    before the method was set up."""
    roles: Mapping[str, Mapping[str, Any]] | None = None
    """Per parameter role: its learning rate and weight decay, and where they came from (methods with roles
    only)."""

    _FIELDS = ("name", "version", "options", "parameters", "roles")

    @classmethod
    def _read(cls, fields: _Fields) -> MethodRecord:
        parameters = fields.optional_fields("parameters")
        if parameters is not None:
            parameters.get("trainable", "integer", optional=True)
        roles = fields.optional_fields("roles")
        if roles is not None:
            for name in roles.data:
                roles.fields(name)
        return cls(
            name=fields.get("name", "string"),
            version=fields.get("version", "string"),
            options=fields.get("options", "object"),
            parameters=fields.get("parameters", "object", optional=True),
            roles=fields.get("roles", "object", optional=True),
        )

    @property
    def trainable(self) -> int | None:
        """Trainable parameters, when the parameter report says (an integer: checked on reading)."""
        trainable: int | None = (self.parameters or {}).get("trainable")
        return trainable

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "version": self.version, "options": _json(self.options)}
        if self.parameters is not None:
            data["parameters"] = _json(self.parameters)
        if self.roles is not None:
            data["roles"] = _json(self.roles)
        return data


@dataclass(frozen=True)
class BackboneRecord:
    """The backbone (:meth:`xpe_bench.backbones.Backbone.describe`)."""

    name: str
    weights_sha256: str
    details: Mapping[str, Any] = field(default_factory=dict)
    """The rest of its description as written: source, sizes, model type, text prefix, pooling."""

    _TYPED = ("name", "weights_sha256")

    @classmethod
    def _read(cls, fields: _Fields) -> BackboneRecord:
        return cls(
            name=fields.get("name", "string"),
            weights_sha256=fields.get("weights_sha256", "string"),
            details=fields.rest(cls._TYPED),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, **_json(self.details)}


@dataclass(frozen=True)
class BudgetRecord:
    """The budget: every field of :meth:`xpe_bench.budgets.Budget.to_dict` plus its fingerprint."""

    name: str
    fingerprint: str
    max_length: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Its other fields as written (steps, batch sizes, learning rates, precision, ...)."""

    _TYPED = ("name", "fingerprint", "max_length")

    @classmethod
    def _read(cls, fields: _Fields) -> BudgetRecord:
        return cls(
            name=fields.get("name", "string"),
            fingerprint=fields.get("fingerprint", "string"),
            max_length=fields.get("max_length", "integer"),
            settings=fields.rest(cls._TYPED),
        )

    def to_dict(self) -> dict[str, Any]:
        typed = {"name": self.name, "fingerprint": self.fingerprint, "max_length": self.max_length}
        return typed | _json(self.settings)


@dataclass(frozen=True)
class DataRecord:
    """The data the run trained on: example counts, hashes of the id lists, and every file read."""

    train_ids_sha256: str
    dev_ids_sha256: str
    train_examples: int | None = None
    """``None`` until training starts."""
    dev_examples: int | None = None
    """``None`` until training starts (left out of the record until then)."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Data file (relative to the data root) or hub revision -> SHA-256."""

    _FIELDS = ("train_examples", "train_ids_sha256", "dev_ids_sha256", "files", "dev_examples")

    @classmethod
    def _read(cls, fields: _Fields) -> DataRecord:
        files = fields.fields("files")
        for name in files.data:
            files.get(name, "string")
        return cls(
            train_ids_sha256=fields.get("train_ids_sha256", "string"),
            dev_ids_sha256=fields.get("dev_ids_sha256", "string"),
            train_examples=fields.get("train_examples", "integer", nullable=True),
            dev_examples=fields.get("dev_examples", "integer", optional=True),
            files=fields.get("files", "object"),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "train_examples": self.train_examples,
            "train_ids_sha256": self.train_ids_sha256,
            "dev_ids_sha256": self.dev_ids_sha256,
            "files": dict(self.files),
        }
        if self.dev_examples is not None:
            data["dev_examples"] = self.dev_examples
        return data


@dataclass(frozen=True)
class TimingsRecord:
    """Seconds spent, accumulated over every session of the run (a resumed run adds to them)."""

    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    backbone_load_seconds: float | None = None
    """This session's backbone load; ``None`` until the run has loaded it (left out until then)."""

    _FIELDS = ("train_seconds", "eval_seconds", "backbone_load_seconds")

    @classmethod
    def _read(cls, fields: _Fields) -> TimingsRecord:
        return cls(
            train_seconds=fields.get("train_seconds", "number"),
            eval_seconds=fields.get("eval_seconds", "number"),
            backbone_load_seconds=fields.get("backbone_load_seconds", "number", optional=True),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds}
        if self.backbone_load_seconds is not None:
            data["backbone_load_seconds"] = self.backbone_load_seconds
        return data


@dataclass(frozen=True)
class FailureRecord:
    """Why a run failed (status ``failed``), and when."""

    error: str
    at: str

    _FIELDS = ("error", "at")

    @classmethod
    def _read(cls, fields: _Fields) -> FailureRecord:
        return cls(error=fields.get("error", "string"), at=fields.get("at", "string"))

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "at": self.at}


@dataclass(frozen=True)
class InitFromRecord:
    """The source-stage run a ``supervised`` run started from: its key, directory, and the parts taken."""

    key: str
    path: str
    parts: str

    _FIELDS = ("key", "path", "parts")

    @classmethod
    def _read(cls, fields: _Fields) -> InitFromRecord:
        return cls(
            key=fields.get("key", "string"),
            path=fields.get("path", "string"),
            parts=fields.get("parts", "string"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": self.path, "parts": self.parts}


# the record -------------------------------------------------------------------------------------------------
_RECORD_FIELDS = (
    "schema",
    "key",
    "status",
    "created",
    "updated",
    "identity",
    "task",
    "method",
    "backbone",
    "budget",
    "seed",
    "regime",
    "sources",
    "targets",
    "data",
    "fit",
    "timings",
    "versions",
    "git",
    "hardware",
    "command",
    "init_from",
    "recovered",
    "convergence",
    "failure",
)


@dataclass(frozen=True)
class RunRecord:
    """One run's record (see the module docstring); build one with :meth:`create` or :meth:`from_dict`."""

    key: str
    status: Status
    created: str
    updated: str
    identity: Mapping[str, Any]
    """What the key is hashed from (task, method and identity options, backbone, budget, regime, sources,
    seed, example-id hashes, and the source-stage run of a supervised run)."""
    task: TaskRecord
    method: MethodRecord
    backbone: BackboneRecord
    budget: BudgetRecord
    seed: int
    regime: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    """The languages with predictions, once the run is complete (empty before)."""
    data: DataRecord
    fit: Mapping[str, Any] | None
    """What the method's ``fit`` reported (``None`` until it has trained); a dev curve under ``history``."""
    timings: TimingsRecord
    versions: Mapping[str, Any]
    git: Mapping[str, Any]
    hardware: Mapping[str, Any]
    command: tuple[str, ...]
    init_from: InitFromRecord | None = None
    recovered: str | None = None
    """Set when the record was rebuilt from the trained state after the original was found corrupt."""
    convergence: Mapping[str, Any] | None = None
    """The convergence verdict recorded when training ended (:meth:`assess` recomputes it by the current
    rule; runs recorded before verdicts existed have none)."""
    failure: FailureRecord | None = None
    """Present exactly when the status is ``failed``."""

    # reading and writing ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, path: Path) -> RunRecord:
        """The record ``data`` (parsed JSON) read from ``path``; :class:`CorruptRunFile` naming ``path`` if it
        is not a record of this schema, is malformed, or its key does not match its identity."""
        if not isinstance(data, dict):
            raise CorruptRunFile(path, "not a run record (not a JSON object)")
        schema = data.get("schema")
        if not _is_int(schema) or schema != RECORD_SCHEMA:
            raise CorruptRunFile(
                path,
                f"unknown run record schema {schema!r}; this version reads schema {RECORD_SCHEMA}",
            )
        try:
            record = cls._read(_Fields(data, "", _RECORD_FIELDS))
        except _Malformed as exc:
            raise CorruptRunFile(path, f"not a run record ({exc})") from None
        if config_key(record.identity) != record.key:
            raise CorruptRunFile(path, "its key does not match its identity (edited or corrupt)")
        return record

    @classmethod
    def _read(cls, fields: _Fields) -> RunRecord:
        status = fields.get("status", "string")
        if status not in STATUSES:
            raise _Malformed(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        fit = fields.get("fit", "object", nullable=True)
        if fit is not None:
            fields.fields("fit").get("history", "objects", optional=True)
        init_from = fields.optional_fields("init_from", InitFromRecord._FIELDS)
        failure = fields.optional_fields("failure", FailureRecord._FIELDS)
        if (status == "failed") != (failure is not None):
            raise _Malformed(f"status {status!r} {'without' if failure is None else 'with'} failure")
        return cls(
            key=fields.get("key", "string"),
            status=status,
            created=fields.get("created", "string"),
            updated=fields.get("updated", "string"),
            identity=fields.get("identity", "object"),
            task=TaskRecord._read(fields.fields("task")),
            method=MethodRecord._read(fields.fields("method", MethodRecord._FIELDS)),
            backbone=BackboneRecord._read(fields.fields("backbone")),
            budget=BudgetRecord._read(fields.fields("budget")),
            seed=fields.get("seed", "integer"),
            regime=fields.get("regime", "string"),
            sources=fields.get("sources", "strings"),
            targets=fields.get("targets", "strings"),
            data=DataRecord._read(fields.fields("data", DataRecord._FIELDS)),
            fit=fit,
            timings=TimingsRecord._read(fields.fields("timings", TimingsRecord._FIELDS)),
            versions=fields.get("versions", "object"),
            git=fields.get("git", "object"),
            hardware=fields.get("hardware", "object"),
            command=fields.get("command", "strings"),
            init_from=None if init_from is None else InitFromRecord._read(init_from),
            recovered=fields.get("recovered", "string", optional=True),
            convergence=fields.get("convergence", "object", optional=True),
            failure=None if failure is None else FailureRecord._read(failure),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON writes it (the layout of :data:`RECORD_SCHEMA`); a fresh copy."""
        data: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "key": self.key,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "identity": _json(self.identity),
            "task": self.task.to_dict(),
            "method": self.method.to_dict(),
            "backbone": self.backbone.to_dict(),
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "regime": self.regime,
            "sources": list(self.sources),
            "targets": list(self.targets),
            "data": self.data.to_dict(),
            "fit": _json(self.fit),
            "timings": self.timings.to_dict(),
            "versions": _json(self.versions),
            "git": _json(self.git),
            "hardware": _json(self.hardware),
            "command": list(self.command),
        }
        if self.init_from is not None:
            data["init_from"] = self.init_from.to_dict()
        if self.recovered is not None:
            data["recovered"] = self.recovered
        if self.convergence is not None:
            data["convergence"] = _json(self.convergence)
        if self.failure is not None:
            data["failure"] = self.failure.to_dict()
        return data

    # what consumers read ------------------------------------------------------------------------------
    @property
    def history(self) -> tuple[Mapping[str, Any], ...]:
        """The dev curve: one entry per evaluation (``step``, ``train_loss``, ``dev_accuracy``, ``dev_loss``);
        empty for runs that trained nothing or have not finished training."""
        return tuple((self.fit or {}).get("history") or ())

    def assess(self) -> Convergence:
        """The convergence verdict by the current rule, derived from the stored fit report, so runs recorded
        before verdicts existed, or under an older rule, are judged alike."""
        return assess(self.fit)

    @property
    def identity_options(self) -> Mapping[str, Any]:
        """The method options as they entered the identity: they leave out options added later at their old
        value (:attr:`xpe_bench.methods.MethodSpec.added_later`), so older runs group with newer ones. A
        hand-made identity without them stands for all the options."""
        method = self.identity.get("method")
        options = method.get("options") if isinstance(method, Mapping) else None
        return options if isinstance(options, Mapping) else self.method.options

    # state changes ------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        identity: Mapping[str, Any],
        task: Mapping[str, Any],
        method: MethodRecord,
        backbone: Mapping[str, Any],
        budget: Mapping[str, Any],
        seed: int,
        regime: str,
        sources: Sequence[str],
        train_ids_sha256: str,
        dev_ids_sha256: str,
        versions: Mapping[str, Any],
        git: Mapping[str, Any],
        hardware: Mapping[str, Any],
        command: Sequence[str],
        init_from: InitFromRecord | None = None,
    ) -> RunRecord:
        """A new run's record (status ``created``). ``task``, ``backbone`` and ``budget`` are their
        descriptions (``describe()``; the budget's ``to_dict()`` with its fingerprint). They and ``method``
        are checked like a record read back: a missing or mistyped field raises ``ValueError`` naming it (a
        bug, not bad input)."""
        now = _now()
        return cls(
            key=config_key(identity),
            status="created",
            created=now,
            updated=now,
            identity=copy.deepcopy(dict(identity)),
            task=TaskRecord._read(_Fields(dict(task), "task")),
            method=MethodRecord._read(_Fields(method.to_dict(), "method", MethodRecord._FIELDS)),
            backbone=BackboneRecord._read(_Fields(dict(backbone), "backbone")),
            budget=BudgetRecord._read(_Fields(dict(budget), "budget")),
            seed=seed,
            regime=regime,
            sources=tuple(sources),
            targets=(),
            data=DataRecord(train_ids_sha256=train_ids_sha256, dev_ids_sha256=dev_ids_sha256),
            fit=None,
            timings=TimingsRecord(),
            versions=copy.deepcopy(dict(versions)),
            git=copy.deepcopy(dict(git)),
            hardware=copy.deepcopy(dict(hardware)),
            command=tuple(command),
            init_from=init_from,
        )

    def _changed(self, status: Status, **changes: Any) -> RunRecord:
        return replace(self, status=status, updated=_now(), **changes)

    def with_method(
        self,
        *,
        options: Mapping[str, Any],
        parameters: Mapping[str, Any],
        roles: Mapping[str, Mapping[str, Any]] | None,
    ) -> RunRecord:
        """The method as this session runs it: every option (a record stored before an option existed gains
        it at the value that reproduces it), its parameter report, and its roles."""
        method = replace(
            self.method,
            options=copy.deepcopy(dict(options)),
            parameters=copy.deepcopy(dict(parameters)),
            roles=None if roles is None else copy.deepcopy(dict(roles)),
        )
        return replace(self, method=method)

    def rebuilt(self, fit: Mapping[str, Any]) -> RunRecord:
        """A new record standing for a corrupt one, from the fit report stored with the trained state:
        status ``trained``, marked :attr:`recovered` (the timings were lost with the original)."""
        return self._changed("trained", fit=copy.deepcopy(dict(fit)), recovered=RECOVERED)

    def training(self, *, train_examples: int, dev_examples: int) -> RunRecord:
        """Training starts (or resumes) on this many source examples."""
        data = replace(self.data, train_examples=train_examples, dev_examples=dev_examples)
        return self._changed("training", data=data)

    def trained(self, fit: Mapping[str, Any], *, seconds: float) -> RunRecord:
        """Training ended with the report ``fit`` after ``seconds`` more: the verdict is recorded with it."""
        report = copy.deepcopy(dict(fit))
        timings = replace(self.timings, train_seconds=self.timings.train_seconds + seconds)
        return self._changed("trained", fit=report, convergence=assess(report).to_dict(), timings=timings)

    def with_inputs(self, *, files: Mapping[str, str], backbone_load_seconds: float) -> RunRecord:
        """The data files this session read (-> SHA-256) and the time its backbone took to load."""
        data = replace(self.data, files=dict(sorted(files.items())))
        timings = replace(self.timings, backbone_load_seconds=backbone_load_seconds)
        return replace(self, data=data, timings=timings)

    def evaluating(self, *, seconds: float) -> RunRecord:
        """One more language predicted, in ``seconds``."""
        timings = replace(self.timings, eval_seconds=self.timings.eval_seconds + seconds)
        return self._changed("evaluating", timings=timings)

    def complete(self, targets: Sequence[str]) -> RunRecord:
        """Finished: ``targets`` are every language with stored predictions."""
        return self._changed("complete", targets=tuple(sorted(targets)))

    def failed(self, error: str) -> RunRecord:
        """The run cannot give valid results (:class:`xpe_bench.errors.RunFailed`); it is never used again."""
        now = _now()
        return replace(self, status="failed", updated=now, failure=FailureRecord(error=error, at=now))
