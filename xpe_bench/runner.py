"""Runs one (task, method, backbone, budget, sources, seed) configuration end to end.

Train once on the sources (or reuse the stored trained state), then predict every requested target language
that has no stored predictions yet. Interrupting at any point loses at most the step since the last
evaluation checkpoint or the language being predicted.

The run directory is used only under its lock. What is read back is validated first, and what is unusable
is recovered, never silently: a corrupt predictions file is moved to ``quarantine/`` and re-predicted from the
stored state; a corrupt state (or fit checkpoint) is quarantined and re-trained; a corrupt run record
(:mod:`xpe_bench.run_record`) is rebuilt from the state's metadata when the state is sound. A run whose
training diverges ends in status ``failed``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers

from xpe_bench import distributed, numerics
from xpe_bench.backbones import Backbone, load_backbone
from xpe_bench.budgets import Budget, subset_indices
from xpe_bench.checkpoint import CheckpointError
from xpe_bench.errors import CorruptRunFile, RunFailed, UserInputError
from xpe_bench.methods import FitContext, Method, MethodSpec, ProgressReporter, SilentProgress
from xpe_bench.paths import cache_root, resolve_data_root, safe_name_part
from xpe_bench.plugins import Registry
from xpe_bench.provenance import git_commit, hardware, package_versions
from xpe_bench.roles import ResolvedRole, resolve_roles
from xpe_bench.run_record import InitFromRecord, MethodRecord, RunRecord, config_key
from xpe_bench.store import RunStore
from xpe_bench.tasks import TaskData, TaskSpec
from xpe_bench.training import checkpoint_step

REGIMES = ("zero-shot-xlt", "supervised", "in-language")
"""zero-shot-xlt: train on the sources, test every target with no target data; supervised: start from a
source-stage run, then train on each target's own split; in-language: train and test on each target alone."""
INIT_PARTS = ("auto", "prompt", "all")


@dataclass
class RunRequest:
    task: str
    method: str
    budget: Budget
    seed: int
    runs_dir: Path
    backbone: str = "me5-small"
    sources: str | None = None
    targets: str | None = None
    data_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    regime: str = "zero-shot-xlt"
    init_from: Path | None = None
    init_parts: str = "auto"


@dataclass
class SourceStage:
    """What a supervised run starts from: (part of) a finished zero-shot-xlt run's trained state."""

    key: str
    path: str
    parts: str
    backbone_sha256: str
    state: dict[str, torch.Tensor]


@dataclass
class PreparedRun:
    """One configuration resolved down to its identity and run directory, ready to execute."""

    request: RunRequest
    task: TaskSpec
    spec: MethodSpec
    options: dict[str, Any]
    sources: list[str]
    targets: list[str]
    init: SourceStage | None
    data: TaskData
    train: datasets.Dataset
    dev: datasets.Dataset
    backbone: Backbone
    backbone_seconds: float
    identity: dict[str, Any]
    store: RunStore
    roles: dict[str, ResolvedRole]
    """The method's roles under the budget (empty for a method that trains nothing)."""

    @property
    def status(self) -> str:
        """The stored status (``absent`` when nothing is stored yet; ``unreadable`` for a corrupt record)."""
        try:
            record = self.store.read_record()
        except CorruptRunFile:
            return "unreadable"
        if record is None:
            return "absent"
        return record.status if record.key == config_key(self.identity) else "foreign"


@dataclass
class RunOutcome:
    store: RunStore
    record: RunRecord
    task: TaskSpec
    targets: list[str]
    metrics: dict[str, dict[str, float]]
    """Per requested target language."""
    reused_state: bool
    reused_languages: list[str]


@dataclass
class Reporters:
    """Progress sinks for the two long phases (the CLI passes rich progress bars)."""

    train: ProgressReporter = field(default_factory=SilentProgress)
    evaluate: ProgressReporter = field(default_factory=SilentProgress)
    note: Callable[[str], None] = lambda message: None
    """One-line notices: resuming, reusing, recovering a corrupt file."""


@dataclass
class _LiveRecord:
    """The record of a run in progress. Every change is written at once, so the file always holds the latest
    record, and a failure is recorded on top of everything recorded before it (timings, example counts)."""

    store: RunStore
    current: RunRecord

    def write(self, record: RunRecord) -> None:
        self.store.write_record(record)
        self.current = record


def _subset(data: TaskData, lang: str, split: str, wanted: int | None, budget: Budget) -> datasets.Dataset:
    full = data.load(lang, split)
    indices = subset_indices(len(full), wanted, data_seed=budget.data_seed, lang=lang, split=split)
    return full.select(indices) if len(indices) != len(full) else full


def _concat(parts: Sequence[datasets.Dataset]) -> datasets.Dataset:
    return datasets.concatenate_datasets(list(parts)) if len(parts) > 1 else parts[0]


def _ids_digest(dataset: datasets.Dataset) -> str:
    joined = "\n".join(f"{lang}\t{i}" for lang, i in zip(dataset["lang"], dataset["id"], strict=True))
    return hashlib.sha256(joined.encode()).hexdigest()


class Runner:
    def __init__(self, registry: Registry, reporters: Reporters | None = None) -> None:
        self.registry = registry
        self.reporters = reporters or Reporters()
        self._backbones: dict[str, tuple[Backbone, float]] = {}
        self._noted_budgets: set[str] = set()

    def resolve_languages(
        self, task: TaskSpec, sources: str | None, targets: str | None
    ) -> tuple[list[str], list[str]]:
        # An empty selection is an error of resolve(), never the task's default.
        source_codes = task.languages.resolve(
            task.default_sources if sources is None else sources, option="--sources"
        )
        test_only = [code for code in source_codes if code in task.test_only]
        if test_only:
            raise UserInputError(
                f"--sources: {test_only} have no training data in {task.name} (test-only targets)"
            )
        target_codes = task.languages.resolve(
            task.default_targets if targets is None else targets, option="--targets"
        )
        return source_codes, target_codes

    def execute(self, request: RunRequest) -> list[RunOutcome]:
        """Run the request's regime: one run (zero-shot-xlt) or one run per target language.

        In a data-parallel launch only the main process returns outcomes; the others help train each run
        (:mod:`xpe_bench.distributed`) and return nothing."""
        if not distributed.is_main():
            for prepared in self.prepare(request):
                self._train_as_peer(prepared)
            return []
        return [self.run_prepared(prepared) for prepared in self.prepare(request)]

    def _note_slow_numerics(self, budget: Budget) -> None:
        """Say once per budget, before its first run (from the CLI or a sweep job), when this CPU computes the
        budget's bf16 slowly."""
        if budget.fingerprint in self._noted_budgets:
            return
        self._noted_budgets.add(budget.fingerprint)
        note = numerics.slow_bf16_note(budget)
        if note:
            self.reporters.note(note)

    def _train_as_peer(self, prepared: PreparedRun) -> None:
        """A non-main process of a data-parallel run: train alongside the main one, write nothing."""
        request = prepared.request
        (needs_fit,) = distributed.from_main([None])
        if not needs_fit:
            return
        transformers.set_seed(request.seed)
        method = prepared.spec.create(prepared.options)
        method.setup(prepared.backbone, prepared.task)
        if prepared.init is not None:
            method.load_state_dict(method.state_dict() | prepared.init.state)
        method.fit(
            FitContext(
                prepared.train,
                prepared.dev,
                request.budget,
                request.seed,
                prepared.store.path / "fit",
                roles=prepared.roles or None,
            )
        )

    def prepare(self, request: RunRequest) -> list[PreparedRun]:
        """Validate the request and resolve each of its runs to an identity and a run directory; nothing is
        written. A ``supervised`` request needs its finished source-stage run (``init_from``)."""
        if request.regime not in REGIMES:
            raise UserInputError(f"--regime: {request.regime!r}; valid: {', '.join(REGIMES)}")
        task = self.registry.task(request.task)
        spec = self.registry.method(request.method)
        if request.regime == "zero-shot-xlt":
            if request.init_from is not None:
                raise UserInputError("--init-from is only used with --regime supervised")
            sources, targets = self.resolve_languages(task, request.sources, request.targets)
            options = spec.resolve_options(request.options)
            roles = self._roles(spec, request.budget)
            return [self._prepare(request, task, spec, options, roles, sources, targets, None)]
        if request.sources is not None:
            raise UserInputError(
                f"--sources is not used with --regime {request.regime}: every target language trains on "
                "its own training split"
            )
        targets = task.languages.resolve(
            task.default_targets if request.targets is None else request.targets, option="--targets"
        )
        no_train = [lang for lang in targets if lang in task.test_only]
        if no_train:
            raise UserInputError(
                f"--targets: {no_train} have no training data in {task.name}, so --regime {request.regime} "
                "cannot train on them; leave them out"
            )
        # The target stage's own option values (e.g. no XPE dropout); the user's options still win.
        options = spec.resolve_options({**spec.target_stage, **request.options})
        roles = self._roles(spec, request.budget)
        init = self._source_stage(request, task, spec, options) if request.regime == "supervised" else None
        return [self._prepare(request, task, spec, options, roles, [lang], [lang], init) for lang in targets]

    @staticmethod
    def _roles(spec: MethodSpec, budget: Budget) -> dict[str, ResolvedRole]:
        """The method's roles under the budget; a role it cannot resolve is a user error, raised before
        anything is written."""
        return resolve_roles(spec.name, spec.roles, budget) if spec.trains else {}

    def _state_roles(
        self, request: RunRequest, task: TaskSpec, spec: MethodSpec, options: dict[str, Any]
    ) -> dict[str, str]:
        """State key -> role, from the method built on the backbone (the run builds it again, reseeded)."""
        backbone, _ = self._backbone(request.backbone)
        method = spec.create(options)
        method.setup(backbone, task)
        return method.parameter_roles()

    def _source_stage(
        self, request: RunRequest, task: TaskSpec, spec: MethodSpec, options: dict[str, Any]
    ) -> SourceStage:
        if request.init_from is None:
            raise UserInputError(
                "--regime supervised needs --init-from RUN_DIR (a finished zero-shot-xlt run)"
            )
        source = RunStore(request.init_from)
        record = source.read_record()
        if record is None or not source.has_state:
            raise UserInputError(f"--init-from: {request.init_from} is not a finished run directory")
        problems = []
        if record.regime != "zero-shot-xlt":
            problems.append(f"its regime is {record.regime}, not zero-shot-xlt")
        if record.method.name != spec.name:
            problems.append(f"it ran method {record.method.name}, not {spec.name}")
        if record.task.name != task.name:
            problems.append(f"it ran task {record.task.name}, not {task.name}")
        if problems:
            raise UserInputError(f"--init-from {request.init_from}: " + "; ".join(problems))
        if request.init_parts not in INIT_PARTS:
            raise UserInputError(f"--init-parts: {request.init_parts!r}; valid: {', '.join(INIT_PARTS)}")
        state = source.load_state()
        parts = request.init_parts
        if parts != "all":  # "prompt": the parameters of the method's source-stage roles
            roles = self._state_roles(request, task, spec, options)
            carried = {k: v for k, v in state.items() if k in roles and spec.roles[roles[k]].source_stage}
            if parts == "auto":  # the paper: only the prompt module comes from the source stage
                parts = "prompt" if carried else "all"
            elif not carried:
                stage_roles = sorted(name for name, role in spec.roles.items() if role.source_stage)
                raise UserInputError(
                    f"--init-parts prompt: the run in {request.init_from} has no parameters in a "
                    f"source-stage role of {spec.name} ({', '.join(stage_roles) or 'it declares none'})"
                )
            if parts == "prompt":
                state = carried
        return SourceStage(
            key=record.key,
            path=str(request.init_from),
            parts=parts,
            backbone_sha256=record.backbone.weights_sha256,
            state=state,
        )

    def _backbone(self, name: str) -> tuple[Backbone, float]:
        """Load a backbone once per runner (a sweep chunk runs many configurations on one backbone)."""
        if name not in self._backbones:
            started = time.perf_counter()
            backbone = load_backbone(name, self.registry.backbones, cache_root())
            self._backbones[name] = (backbone, time.perf_counter() - started)
        return self._backbones[name]

    def _prepare(
        self,
        request: RunRequest,
        task: TaskSpec,
        spec: MethodSpec,
        options: dict[str, Any],
        roles: dict[str, ResolvedRole],
        sources: list[str],
        targets: list[str],
        init: SourceStage | None,
    ) -> PreparedRun:
        data = TaskData(task, resolve_data_root(request.data_dir, task.data_root))
        budget = request.budget
        train = _concat([_subset(data, lang, "train", budget.train_per_lang, budget) for lang in sources])
        dev = _concat([_subset(data, lang, "dev", budget.dev_per_lang, budget) for lang in sources])

        backbone, backbone_seconds = self._backbone(request.backbone)
        if init is not None and init.backbone_sha256 != backbone.weights_sha256:
            raise UserInputError(f"--init-from {init.path}: it was trained on other backbone weights")

        identity = {
            "task": {"name": task.name, "version": task.version, "definition_sha256": task.definition_sha256},
            "method": {"name": spec.name, "version": spec.version, "options": spec.identity_options(options)},
            "backbone": {"name": backbone.name, "weights_sha256": backbone.weights_sha256},
            "budget": budget.fingerprint,
            "regime": request.regime,
            "sources": sources,
            "seed": request.seed,
            "train_ids_sha256": _ids_digest(train),
            "dev_ids_sha256": _ids_digest(dev),
        }
        if init is not None:
            identity["init_from"] = {"key": init.key, "parts": init.parts}
        parts = [task.name, spec.name, backbone.name, budget.name.split("+")[0]]
        if request.regime != "zero-shot-xlt":
            parts += [request.regime, sources[0]]
        label = "-".join(safe_name_part(part) for part in [*parts, f"s{request.seed}"])
        store = RunStore.for_identity(request.runs_dir, identity, label)
        return PreparedRun(
            request=request,
            task=task,
            spec=spec,
            options=options,
            sources=sources,
            targets=targets,
            init=init,
            data=data,
            train=train,
            dev=dev,
            backbone=backbone,
            backbone_seconds=backbone_seconds,
            identity=identity,
            store=store,
            roles=roles,
        )

    def run_prepared(self, prepared: PreparedRun) -> RunOutcome:
        """Execute one prepared run under its run directory's lock (:class:`RunLocked` if a live process
        holds it): reuse what is stored and sound, recover what is not, train and predict the rest."""
        request, task, spec, options = prepared.request, prepared.task, prepared.spec, prepared.options
        targets, init, data, budget = prepared.targets, prepared.init, prepared.data, request.budget
        train, dev, backbone = prepared.train, prepared.dev, prepared.backbone
        store = prepared.store
        self._note_slow_numerics(budget)
        # Everything that can fail on bad input (the method's setup, the targets' test files) fails before
        # the run directory is created.
        tests = {lang: _subset(data, lang, "test", budget.test_per_lang, budget) for lang in targets}
        transformers.set_seed(request.seed)
        method = spec.create(options)
        method.setup(backbone, task)
        with store.locked():
            removed = store.remove_temp_files()
            if removed:
                self.reporters.note(f"removed {removed} temporary file(s) left by an interrupted write")
            record, stored = self._open_record(prepared, method.parameter_report().to_dict())
            live = _LiveRecord(store, record)

            reused_state = stored is not None
            try:
                if stored is not None:
                    try:
                        method.load_state_dict(stored[0])
                    except ValueError as exc:  # readable, but not this method's tensors
                        self._discard_state(store, f"{store.state_path}: {exc}")
                        stored = None
                        reused_state = False
                distributed.from_main([stored is None])  # tell the peers whether there is training to do
                if stored is None:
                    if init is not None:
                        method.load_state_dict(method.state_dict() | init.state)
                    self._fit(method, live, train, dev, budget, request.seed, prepared.roles)
                live.write(
                    live.current.with_inputs(
                        files=data.fingerprints, backbone_load_seconds=prepared.backbone_seconds
                    )
                )

                already = set(self._valid_predictions(store, tests))
                reused_languages = [lang for lang in targets if lang in already]
                todo = {lang: test for lang, test in tests.items() if lang not in already}
                self._predict(method, task, live, todo, budget)
            except RunFailed as exc:
                live.write(live.current.failed(str(exc)))
                store.clear_fit_dir()
                raise RunFailed(f"{exc} (status 'failed' recorded in {store.path})") from exc

            metrics_all = store.compute_metrics(task.num_labels)
            store.write_metrics(metrics_all)
            live.write(live.current.complete(list(metrics_all)))
            return RunOutcome(
                store=store,
                record=live.current,
                task=task,
                targets=targets,
                metrics={lang: metrics_all[lang] for lang in targets},
                reused_state=reused_state,
                reused_languages=reused_languages,
            )

    def _open_record(
        self, prepared: PreparedRun, parameters: Mapping[str, Any]
    ) -> tuple[RunRecord, tuple[dict[str, torch.Tensor], dict[str, Any]] | None]:
        """This configuration's record (stored, rebuilt or new), written with the method as this session runs
        it (``parameters``: its parameter report), and its stored trained state."""
        store, identity = prepared.store, prepared.identity
        try:
            record = store.read_record()
        except CorruptRunFile as exc:
            moved = store.quarantine(exc.path)
            self.reporters.note(f"{exc} — moved to {moved.relative_to(store.path)}; rebuilding the record")
            record = None
        if record is not None and record.key != config_key(identity):
            raise UserInputError(
                f"{store.path} holds another configuration (key {record.key[:12]}); refusing to "
                "overwrite it: move it away or use another --runs-dir"
            )
        if record is not None and record.failure is not None:
            raise RunFailed(
                f"{store.path}: this configuration failed before ({record.failure.error}); remove the "
                "directory to try again"
            )
        stored = self._stored_state(store, config_key(identity))
        if record is None:
            record = self._new_record(prepared)
            if stored is not None and stored[1] is None:
                self._discard_state(store, "the trained state has no fit report to rebuild the record from")
                stored = None
            if stored is not None:
                record = record.rebuilt(stored[1])
        # A stored record has the same key, so its options differ at most by options added later at their
        # old value (MethodSpec.added_later): the record names every option the run is scored under.
        # Where every learning rate came from, fallbacks included (methods that train nothing have no roles).
        roles = {name: role.to_dict() for name, role in prepared.roles.items()} or None
        record = record.with_method(options=prepared.options, parameters=parameters, roles=roles)
        store.write_record(record)
        return record, stored

    def _stored_state(
        self, store: RunStore, key: str
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None] | None:
        """The stored trained state and its fit report (``None`` for states written before it was stored),
        or ``None`` when there is no usable state."""
        if not store.has_state:
            return None
        try:
            metadata = store.state_metadata()
            if metadata.get("run_key") != key:
                raise CorruptRunFile(store.state_path, "it belongs to another run (its run_key differs)")
            state = store.load_state()
        except CorruptRunFile as exc:
            self._discard_state(store, str(exc))
            return None
        return state, json.loads(metadata["fit"]) if "fit" in metadata else None

    def _discard_state(self, store: RunStore, why: str) -> None:
        """Quarantine an unusable trained state with the predictions made from it, and say so."""
        moved = store.quarantine(store.state_path)
        if store.predicted_languages():
            store.quarantine(store.path / "predictions")
        self.reporters.note(f"{why} — moved to {moved.parent.relative_to(store.path)}; re-training")

    def _valid_predictions(self, store: RunStore, tests: Mapping[str, datasets.Dataset]) -> list[str]:
        """The requested languages whose stored predictions are sound; corrupt ones are quarantined."""
        valid = []
        for lang in store.predicted_languages():
            if lang not in tests:
                continue
            try:
                store.read_predictions(lang, expected_ids=tests[lang]["id"])
            except CorruptRunFile as exc:
                moved = store.quarantine(exc.path)
                self.reporters.note(f"{exc} — moved to {moved.relative_to(store.path)}; predicting it again")
                continue
            valid.append(lang)
        return valid

    def _new_record(self, prepared: PreparedRun) -> RunRecord:
        """A new record (status ``created``) for the prepared configuration."""
        request, identity, init = prepared.request, prepared.identity, prepared.init
        spec, budget = prepared.spec, request.budget
        return RunRecord.create(
            identity=identity,
            task=prepared.task.describe(),
            method=MethodRecord(name=spec.name, version=spec.version, options=prepared.options),
            backbone=prepared.backbone.describe(),
            budget=budget.to_dict() | {"fingerprint": budget.fingerprint},
            seed=request.seed,
            regime=request.regime,
            sources=prepared.sources,
            train_ids_sha256=identity["train_ids_sha256"],
            dev_ids_sha256=identity["dev_ids_sha256"],
            versions=package_versions(),
            git=git_commit(),
            hardware=hardware(),
            command=sys.argv,
            init_from=None
            if init is None
            else InitFromRecord(key=init.key, path=init.path, parts=init.parts),
        )

    def _fit(
        self,
        method: Method,
        live: _LiveRecord,
        train: datasets.Dataset,
        dev: datasets.Dataset,
        budget: Budget,
        seed: int,
        roles: dict[str, ResolvedRole],
    ) -> None:
        store = live.store
        live.write(live.current.training(train_examples=len(train), dev_examples=len(dev)))
        for pickled in sorted(store.fit_dir.glob("*.pt")):  # pickle checkpoints of earlier releases
            moved = store.quarantine(pickled)
            self.reporters.note(
                f"{pickled.name}: a pickle checkpoint is never loaded (it could execute code) — moved to "
                f"{moved.parent.relative_to(store.path)}"
            )
        resume_step = checkpoint_step(store.fit_dir)
        if resume_step:
            self.reporters.note(f"resuming the interrupted training from step {resume_step}")
        started = time.perf_counter()
        context = FitContext(train, dev, budget, seed, store.fit_dir, self.reporters.train, roles or None)
        try:
            report = method.fit(context)
        except CheckpointError as exc:
            moved = store.quarantine(store.fit_dir)
            self.reporters.note(f"{exc} — moved to {moved.relative_to(store.path)}; training from step 0")
            context = FitContext(train, dev, budget, seed, store.fit_dir, self.reporters.train, roles or None)
            report = method.fit(context)
        # with the training time of interrupted earlier sessions, up to the checkpoint this one resumed from
        seconds = time.perf_counter() - started + float(report.get("train_seconds_before_this_session", 0.0))
        fit_json = json.dumps(report, allow_nan=False, sort_keys=True)
        store.save_state(method.state_dict(), {"run_key": live.current.key, "fit": fit_json})
        store.clear_fit_dir()
        live.write(live.current.trained(report, seconds=seconds))

    def _predict(
        self,
        method: Method,
        task: TaskSpec,
        live: _LiveRecord,
        tests: Mapping[str, datasets.Dataset],
        budget: Budget,
    ) -> None:
        self.reporters.evaluate.start("evaluate", sum(len(t) for t in tests.values()))
        for lang, test in tests.items():
            started = time.perf_counter()
            scores = method.predict(test, budget)
            if np.isnan(scores).any() or np.isposinf(scores).any():
                raise RunFailed(f"{lang}: the method returned non-finite scores (NaN or +inf)")
            allowed = task.allowed_label_mask(lang)
            if allowed is not None:  # labels_per_language: only the language's own labels can be predicted
                scores = np.where(allowed, scores, -np.inf)
            live.store.write_predictions(lang, test["id"], test["label"], scores)
            # Written per language: an interruption keeps the time spent so far.
            live.write(live.current.evaluating(seconds=time.perf_counter() - started))
            self.reporters.evaluate.advance(len(test), lang=lang)
        self.reporters.evaluate.finish()
