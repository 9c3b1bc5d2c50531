"""Runs one (task, method, backbone, budget, sources, seed) configuration end to end.

Train once on the sources (or reuse the stored trained state), then predict every requested target language
that has no stored predictions yet. Interrupting at any point loses at most the step since the last
evaluation checkpoint or the language being predicted.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers

from xpe_bench.backbones import Backbone, load_backbone
from xpe_bench.budgets import Budget, subset_indices
from xpe_bench.convergence import assess
from xpe_bench.errors import UserInputError
from xpe_bench.methods import FitContext, Method, MethodSpec, ProgressReporter, SilentProgress
from xpe_bench.paths import cache_root, resolve_data_root
from xpe_bench.plugins import Registry
from xpe_bench.provenance import git_commit, hardware, package_versions
from xpe_bench.store import RunStore, config_key
from xpe_bench.tasks import TaskData, TaskSpec

REGIMES = ("zero-shot-xlt", "supervised", "in-language")
"""zero-shot-xlt: train on the sources, test every target with no target data; supervised: start from a
source-stage run, then train on each target's own split; in-language: train and test on each target alone."""
INIT_PARTS = ("auto", "prompt", "all")
MANIFEST_SCHEMA = 1


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
class RunOutcome:
    store: RunStore
    manifest: dict[str, Any]
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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

    def resolve_languages(
        self, task: TaskSpec, sources: str | None, targets: str | None
    ) -> tuple[list[str], list[str]]:
        source_codes = task.languages.resolve(sources or task.default_sources, option="--sources")
        test_only = [code for code in source_codes if code in task.test_only]
        if test_only:
            raise UserInputError(
                f"--sources: {test_only} have no training data in {task.name} (test-only targets)"
            )
        target_codes = task.languages.resolve(targets or task.default_targets, option="--targets")
        return source_codes, target_codes

    def execute(self, request: RunRequest) -> list[RunOutcome]:
        """Run the request's regime: one run (zero-shot-xlt) or one run per target language."""
        if request.regime not in REGIMES:
            raise UserInputError(f"--regime: {request.regime!r}; valid: {', '.join(REGIMES)}")
        task = self.registry.task(request.task)
        spec = self.registry.method(request.method)
        if request.regime == "zero-shot-xlt":
            if request.init_from is not None:
                raise UserInputError("--init-from is only used with --regime supervised")
            sources, targets = self.resolve_languages(task, request.sources, request.targets)
            options = spec.resolve_options(request.options)
            return [self._run(request, task, spec, options, sources, targets, None)]
        if request.sources is not None:
            raise UserInputError(
                f"--sources is not used with --regime {request.regime}: every target language trains on "
                "its own training split"
            )
        targets = task.languages.resolve(request.targets or task.default_targets, option="--targets")
        no_train = [lang for lang in targets if lang in task.test_only]
        if no_train:
            raise UserInputError(
                f"--targets: {no_train} have no training data in {task.name}, so --regime {request.regime} "
                "cannot train on them; leave them out"
            )
        # The target stage's own option values (e.g. no XPE dropout); the user's options still win.
        options = spec.resolve_options({**spec.target_stage, **request.options})
        init = self._source_stage(request, task, spec) if request.regime == "supervised" else None
        return [self._run(request, task, spec, options, [lang], [lang], init) for lang in targets]

    def _source_stage(self, request: RunRequest, task: TaskSpec, spec: MethodSpec) -> SourceStage:
        if request.init_from is None:
            raise UserInputError(
                "--regime supervised needs --init-from RUN_DIR (a finished zero-shot-xlt run)"
            )
        source = RunStore(request.init_from)
        manifest = source.read_manifest()
        if manifest is None or not source.has_state:
            raise UserInputError(f"--init-from: {request.init_from} is not a finished run directory")
        problems = []
        if manifest["regime"] != "zero-shot-xlt":
            problems.append(f"its regime is {manifest['regime']}, not zero-shot-xlt")
        if manifest["method"]["name"] != spec.name:
            problems.append(f"it ran method {manifest['method']['name']}, not {spec.name}")
        if manifest["task"]["name"] != task.name:
            problems.append(f"it ran task {manifest['task']['name']}, not {task.name}")
        if problems:
            raise UserInputError(f"--init-from {request.init_from}: " + "; ".join(problems))
        if request.init_parts not in INIT_PARTS:
            raise UserInputError(f"--init-parts: {request.init_parts!r}; valid: {', '.join(INIT_PARTS)}")
        state = source.load_state()
        parts = request.init_parts
        if parts == "auto":  # the paper: only the prompt module comes from the source stage
            parts = "prompt" if any(k.startswith("prompt.") for k in state) else "all"
        if parts == "prompt":
            state = {k: v for k, v in state.items() if k.startswith("prompt.")}
            if not state:
                raise UserInputError(
                    f"--init-parts prompt: the run in {request.init_from} has no prompt module"
                )
        return SourceStage(
            key=manifest["key"],
            path=str(request.init_from),
            parts=parts,
            backbone_sha256=manifest["backbone"]["weights_sha256"],
            state=state,
        )

    def _run(
        self,
        request: RunRequest,
        task: TaskSpec,
        spec: MethodSpec,
        options: dict[str, Any],
        sources: list[str],
        targets: list[str],
        init: SourceStage | None,
    ) -> RunOutcome:
        data = TaskData(task, resolve_data_root(request.data_dir))
        budget = request.budget
        train = _concat([_subset(data, lang, "train", budget.train_per_lang, budget) for lang in sources])
        dev = _concat([_subset(data, lang, "dev", budget.dev_per_lang, budget) for lang in sources])

        started = time.perf_counter()
        backbone = load_backbone(request.backbone, self.registry.backbones, cache_root())
        backbone_seconds = time.perf_counter() - started
        if init is not None and init.backbone_sha256 != backbone.weights_sha256:
            raise UserInputError(f"--init-from {init.path}: it was trained on other backbone weights")

        identity = {
            "task": {"name": task.name, "version": task.version, "definition_sha256": task.definition_sha256},
            "method": {"name": spec.name, "version": spec.version, "options": options},
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
        backbone_label = backbone.name.replace("/", "_")
        label = f"{task.name}-{spec.name}-{backbone_label}-{budget.name.split('+')[0]}"
        if request.regime != "zero-shot-xlt":
            label += f"-{request.regime}-{sources[0]}"
        store = RunStore.for_identity(request.runs_dir, identity, f"{label}-s{request.seed}")
        manifest = store.read_manifest()
        if manifest is not None and manifest.get("key") != config_key(identity):
            raise RuntimeError(f"{store.path} holds a different configuration; refusing to overwrite it")
        if manifest is None:
            manifest = self._new_manifest(request, identity, task, spec, backbone, budget, sources)
            if init is not None:
                manifest["init_from"] = {"key": init.key, "path": init.path, "parts": init.parts}
            store.write_manifest(manifest)

        transformers.set_seed(request.seed)
        method = spec.create(options)
        method.setup(backbone, task)
        manifest["method"]["parameters"] = method.parameter_report().to_dict()

        reused_state = store.has_state
        if reused_state:
            method.load_state_dict(store.load_state())
        else:
            if init is not None:
                method.load_state_dict(method.state_dict() | init.state)
            self._fit(method, store, manifest, train, dev, budget, request.seed)
        manifest["data"]["files"] = dict(sorted(data.fingerprints.items()))
        manifest["timings"]["backbone_load_seconds"] = backbone_seconds

        already = set(store.predicted_languages())
        reused_languages = [lang for lang in targets if lang in already]
        todo = [lang for lang in targets if lang not in already]
        self._predict(method, store, manifest, data, todo, budget)

        metrics_all = store.compute_metrics(task.num_labels)
        store.write_metrics(metrics_all)
        manifest["targets"] = sorted(metrics_all)
        manifest["status"] = "complete"
        manifest["updated"] = _now()
        store.write_manifest(manifest)
        return RunOutcome(
            store=store,
            manifest=manifest,
            task=task,
            targets=targets,
            metrics={lang: metrics_all[lang] for lang in targets},
            reused_state=reused_state,
            reused_languages=reused_languages,
        )

    def _new_manifest(
        self,
        request: RunRequest,
        identity: Mapping[str, Any],
        task: TaskSpec,
        spec: MethodSpec,
        backbone: Backbone,
        budget: Budget,
        sources: list[str],
    ) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "key": config_key(identity),
            "status": "created",
            "created": _now(),
            "updated": _now(),
            "identity": dict(identity),
            "task": task.describe(),
            "method": {"name": spec.name, "version": spec.version, "options": identity["method"]["options"]},
            "backbone": backbone.describe(),
            "budget": budget.to_dict() | {"fingerprint": budget.fingerprint},
            "seed": request.seed,
            "regime": request.regime,
            "sources": sources,
            "targets": [],
            "data": {
                "train_examples": None,
                "train_ids_sha256": identity["train_ids_sha256"],
                "dev_ids_sha256": identity["dev_ids_sha256"],
                "files": {},
            },
            "fit": None,
            "timings": {"train_seconds": 0.0, "eval_seconds": 0.0},
            "versions": package_versions(),
            "git": git_commit(),
            "hardware": hardware(),
            "command": sys.argv,
        }

    def _fit(
        self,
        method: Method,
        store: RunStore,
        manifest: dict[str, Any],
        train: datasets.Dataset,
        dev: datasets.Dataset,
        budget: Budget,
        seed: int,
    ) -> None:
        manifest["status"] = "training"
        manifest["data"]["train_examples"] = len(train)
        manifest["data"]["dev_examples"] = len(dev)
        store.write_manifest(manifest)
        started = time.perf_counter()
        context = FitContext(train, dev, budget, seed, store.fit_dir, self.reporters.train)
        report = method.fit(context)
        manifest["timings"]["train_seconds"] += time.perf_counter() - started
        manifest["fit"] = report
        manifest["convergence"] = assess(report).to_dict()
        store.save_state(method.state_dict(), {"run_key": manifest["key"]})
        store.clear_fit_dir()
        manifest["status"] = "trained"
        manifest["updated"] = _now()
        store.write_manifest(manifest)

    def _predict(
        self,
        method: Method,
        store: RunStore,
        manifest: dict[str, Any],
        data: TaskData,
        languages: list[str],
        budget: Budget,
    ) -> None:
        tests = {lang: _subset(data, lang, "test", budget.test_per_lang, budget) for lang in languages}
        self.reporters.evaluate.start("evaluate", sum(len(t) for t in tests.values()))
        for lang, test in tests.items():
            started = time.perf_counter()
            scores = method.predict(test, budget)
            store.write_predictions(lang, test["id"], test["label"], scores)
            manifest["timings"]["eval_seconds"] += time.perf_counter() - started
            manifest["status"] = "evaluating"
            store.write_manifest(manifest)  # an interruption keeps the time spent so far
            self.reporters.evaluate.advance(len(test), lang=lang)
        self.reporters.evaluate.finish()
