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
import transformers

from xpe_bench.backbones import Backbone, load_backbone
from xpe_bench.budgets import Budget, subset_indices
from xpe_bench.errors import UserInputError
from xpe_bench.methods import FitContext, Method, MethodSpec, ProgressReporter, SilentProgress
from xpe_bench.paths import cache_root, resolve_data_root
from xpe_bench.plugins import Registry
from xpe_bench.provenance import git_commit, hardware, package_versions
from xpe_bench.store import RunStore, config_key
from xpe_bench.tasks import TaskData, TaskSpec

REGIME = "zero-shot-xlt"
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

    def execute(self, request: RunRequest) -> RunOutcome:
        task = self.registry.task(request.task)
        spec = self.registry.method(request.method)
        options = spec.resolve_options(request.options)
        sources, targets = self.resolve_languages(task, request.sources, request.targets)
        data = TaskData(task, resolve_data_root(request.data_dir))
        budget = request.budget

        train = _concat([_subset(data, lang, "train", budget.train_per_lang, budget) for lang in sources])
        dev = _concat([_subset(data, lang, "dev", budget.dev_per_lang, budget) for lang in sources])

        started = time.perf_counter()
        backbone = load_backbone(request.backbone, self.registry.backbones, cache_root())
        backbone_seconds = time.perf_counter() - started

        identity = {
            "task": {"name": task.name, "version": task.version, "definition_sha256": task.definition_sha256},
            "method": {"name": spec.name, "version": spec.version, "options": options},
            "backbone": {"name": backbone.name, "weights_sha256": backbone.weights_sha256},
            "budget": budget.fingerprint,
            "regime": REGIME,
            "sources": sources,
            "seed": request.seed,
            "train_ids_sha256": _ids_digest(train),
            "dev_ids_sha256": _ids_digest(dev),
        }
        backbone_label = backbone.name.replace("/", "_")
        label = f"{task.name}-{spec.name}-{backbone_label}-{budget.name.split('+')[0]}-s{request.seed}"
        store = RunStore.for_identity(request.runs_dir, identity, label)
        manifest = store.read_manifest()
        if manifest is not None and manifest.get("key") != config_key(identity):
            raise RuntimeError(f"{store.path} holds a different configuration; refusing to overwrite it")
        if manifest is None:
            manifest = self._new_manifest(request, identity, task, spec, backbone, budget, sources)
            store.write_manifest(manifest)

        transformers.set_seed(request.seed)
        method = spec.create(options)
        method.setup(backbone, task)
        manifest["method"]["parameters"] = method.parameter_report().to_dict()

        reused_state = store.has_state
        if reused_state:
            method.load_state_dict(store.load_state())
        else:
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
            "regime": REGIME,
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
            self.reporters.evaluate.advance(len(test), lang=lang)
        self.reporters.evaluate.finish()
