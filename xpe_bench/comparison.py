"""Loading runs for comparison: runs, systems, compatibility checks, item alignment, paired comparisons.

A *system* is one configuration — task, method and options, backbone, budget, regime, sources — and its runs
differ only by seed. Runs are read from run directories or from compact ``*.json.gz`` files (see
:mod:`xpe_bench.compact`); a folder holding several of them stands for all of them, so ``runs/`` compares
everything in it.

Comparisons are only meaningful on equal terms, so runs whose budgets (fingerprints), tasks (name and
version) or label sets differ are refused unless ``force`` is set, and then every output carries a warning.
Aggregates use only the languages *every* run predicted (the coverage says which were left out), and within
a language only the test items every run predicted, paired by item id.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xpe_bench.compact import SUFFIX, decode_labels, read_compact
from xpe_bench.convergence import Convergence, Summary
from xpe_bench.errors import UserInputError
from xpe_bench.languages import LanguageTable, joshi_label_order
from xpe_bench.metrics import credit
from xpe_bench.plugins import Registry, load_registry
from xpe_bench.run_level import RunLevelResult, run_level_test
from xpe_bench.run_record import RunRecord, canonical_json
from xpe_bench.statistics import (
    ALPHA,
    Correction,
    Estimate,
    LanguageScores,
    PairedResult,
    PairedTestName,
    SignedRankResult,
    Verdict,
    WinTieLoss,
    adjust_pvalues,
    paired_tests,
    score_languages,
    two_stage_interval,
    verdict,
    wilcoxon_signed_rank,
)
from xpe_bench.store import MANIFEST, RunStore

GROUPS = ("low-performing", "unseen", "seen-wo-joshi5", "all-wo-joshi5", "all")
"""Named language groups reported by ``--by group`` (those the task defines, in this order)."""

GroupBy = Literal["joshi", "group"]


@dataclass(frozen=True)
class LanguageItems:
    """One language's stored predictions: item ids, gold labels, predicted labels (-1 = abstention)."""

    ids: tuple[str, ...]
    gold: np.ndarray
    pred: np.ndarray
    tied: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    """Item position -> labels tied at its top score (:mod:`xpe_bench.metrics`); ``pred`` is the first."""


@dataclass(frozen=True)
class Run:
    """One run (one seed) read back from its directory or compact file."""

    path: Path
    record: RunRecord
    predictions: Mapping[str, LanguageItems]

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(SUFFIX)

    @property
    def task(self) -> str:
        return f"{self.record.task.name} v{self.record.task.version}"

    @property
    def task_name(self) -> str:
        return self.record.task.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.record.task.labels

    @property
    def method(self) -> str:
        return self.record.method.name

    @property
    def options(self) -> Mapping[str, Any]:
        return self.record.method.options

    @property
    def backbone(self) -> str:
        return self.record.backbone.name

    @property
    def backbone_sha256(self) -> str:
        return self.record.backbone.weights_sha256

    @property
    def budget(self) -> str:
        """Budget name and fingerprint prefix, e.g. ``quick (beb266c8c793)``."""
        return f"{self.record.budget.name} ({self.budget_fingerprint[:12]})"

    @property
    def budget_fingerprint(self) -> str:
        return self.record.budget.fingerprint

    @property
    def seed(self) -> int:
        return self.record.seed

    @property
    def regime(self) -> str:
        return self.record.regime

    @property
    def sources(self) -> tuple[str, ...]:
        return self.record.sources

    @property
    def trainable(self) -> int | None:
        return self.record.method.trainable

    @property
    def train_seconds(self) -> float:
        return self.record.timings.train_seconds

    @property
    def convergence(self) -> Convergence:
        """The convergence verdict, always derived from the stored dev curve by the current rule, so runs
        (and compact files) recorded before the verdict existed, or under an older rule, are judged alike."""
        return self.record.assess()

    @property
    def system_key(self) -> str:
        """Everything that makes two runs the same system, apart from the seed. The options are those of the
        run identity, which leaves out options added later at their earlier behaviour
        (:attr:`xpe_bench.methods.MethodSpec.added_later`), so older runs group with newer ones."""
        return canonical_json(
            {
                "task": [self.task_name, self.record.task.version],
                "method": [self.method, self.record.identity_options],
                "backbone": [self.backbone, self.backbone_sha256],
                "budget": self.budget_fingerprint,
                "regime": self.regime,
                "sources": self.sources,
            }
        )


def is_run(path: Path) -> bool:
    return (path.is_dir() and (path / MANIFEST).is_file()) or (path.is_file() and path.name.endswith(SUFFIX))


def expand_run_paths(path: Path) -> list[Path]:
    """A run directory or compact file as itself; any other folder as the runs directly inside it."""
    if is_run(path):
        return [path]
    if path.is_dir():
        found = sorted(child for child in path.iterdir() if is_run(child))
        if found:
            return found
        raise UserInputError(f"{path}: no run directories (with {MANIFEST}) or *{SUFFIX} files in it")
    raise UserInputError(f"{path}: no such run directory, compact run file (*{SUFFIX}) or folder of runs")


def _items(
    where: str,
    ids: Sequence[Any],
    gold: Sequence[int],
    pred: Sequence[int],
    tied: Mapping[str, Sequence[int]] | None = None,
) -> LanguageItems:
    names = tuple(str(i) for i in ids)
    if len(set(names)) != len(names):
        raise UserInputError(f"{where}: duplicate item ids")
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(tied or {}) - set(position))
    if unknown:
        raise UserInputError(f"{where}: ties for unknown item ids {_names(unknown)}")
    return LanguageItems(
        names,
        np.asarray(gold, dtype=np.int64),
        np.asarray(pred, dtype=np.int64),
        {position[item]: tuple(int(label) for label in labels) for item, labels in (tied or {}).items()},
    )


def load_record(path: Path) -> RunRecord:
    """The run record of a run directory or compact file (:class:`~xpe_bench.errors.CorruptRunFile` naming
    the file when it is unusable)."""
    if path.is_file() and path.name.endswith(SUFFIX):
        return RunRecord.from_dict(read_compact(path)["manifest"], path)
    record = RunStore(path).read_record()
    if record is None:
        raise UserInputError(
            f"{path}: not a run directory (no {MANIFEST}) nor a compact run file (*{SUFFIX})"
        )
    return record


def load_run(path: Path) -> Run:
    """Read one run: a run directory (record + predictions) or a compact ``*.json.gz`` file."""
    if path.is_file() and path.name.endswith(SUFFIX):
        payload = read_compact(path)
        record = RunRecord.from_dict(payload["manifest"], path)
        predictions = {
            lang: _items(
                f"{path} [{lang}]",
                items["ids"],
                decode_labels(items["gold"]),
                decode_labels(items["pred"]),
                items.get("tied"),
            )
            for lang, items in sorted(payload["predictions"].items())
        }
    else:
        record = load_record(path)
        store = RunStore(path)
        predictions = {}
        for lang in store.predicted_languages():
            rows = store.read_predictions(lang)
            predictions[lang] = _items(
                str(store.predictions_path(lang)),
                [row["id"] for row in rows],
                [row["gold"] for row in rows],
                [row["pred"] for row in rows],
                {str(row["id"]): row["tied"] for row in rows if "tied" in row},
            )
    if record.failure is not None:
        raise UserInputError(
            f"{path}: the run failed ({record.failure.error}); failed runs are never compared or ranked: "
            "leave it out"
        )
    if not predictions:
        raise UserInputError(f"{path}: no predictions yet (nothing to compare)")
    return Run(path=path, record=record, predictions=predictions)


def load_runs(paths: Iterable[Path]) -> list[Run]:
    return [load_run(run_path) for path in paths for run_path in expand_run_paths(path)]


# systems ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """The runs of one configuration, one per seed (sorted by seed)."""

    label: str
    runs: tuple[Run, ...]

    @property
    def method(self) -> str:
        return self.runs[0].method

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    @property
    def languages(self) -> frozenset[str]:
        """Languages every seed predicted."""
        return frozenset.intersection(*(frozenset(run.predictions) for run in self.runs))

    @property
    def trainable(self) -> int | None:
        return next((run.trainable for run in self.runs if run.trainable is not None), None)

    @property
    def convergence(self) -> Summary:
        return Summary.of([run.convergence for run in self.runs])

    @property
    def train_seconds(self) -> float:
        """Mean training time over the seeds."""
        return float(np.mean([run.train_seconds for run in self.runs]))

    def describe(self) -> dict[str, Any]:
        first = self.runs[0]
        return {
            "label": self.label,
            "method": self.method,
            "options": dict(first.options),
            "backbone": first.backbone,
            "budget": first.budget,
            "regime": first.regime,
            "sources": list(first.sources),
            "seeds": list(self.seeds),
            "runs": [str(run.path) for run in self.runs],
            "convergence": [run.convergence.to_dict() for run in self.runs],
        }


def _sources_text(sources: Sequence[str]) -> str:
    if len(sources) <= 3:
        return "+".join(sources)
    return f"{len(sources)} languages #{hashlib.sha256(','.join(sources).encode()).hexdigest()[:6]}"


def _distinguishing(run: Run) -> dict[str, str]:
    """What may tell apart two systems of the same method, as short ``key=value`` parts."""
    parts = {
        "task": run.task,
        "backbone": run.backbone,
        "weights": run.backbone_sha256[:8],
        "budget": run.budget,
        "regime": run.regime,
        "sources": _sources_text(run.sources),
    }
    parts.update({key: canonical_json(value) for key, value in sorted(run.options.items())})
    return parts


def _labels(firsts: Sequence[Run]) -> list[str]:
    """System labels: the method name, plus what differs when several systems share a method."""
    labels = [run.method for run in firsts]
    for method in sorted(set(labels)):
        members = [i for i, run in enumerate(firsts) if run.method == method]
        if len(members) < 2:
            continue
        described = [_distinguishing(firsts[i]) for i in members]
        keys = list(dict.fromkeys(key for parts in described for key in parts))
        differing = [key for key in keys if len({parts.get(key) for parts in described}) > 1]
        if "backbone" in differing and "weights" in differing:
            differing.remove("weights")
        for i, parts in zip(members, described, strict=True):
            shown = ", ".join(f"{key}={parts.get(key, '-')}" for key in differing)
            labels[i] = f"{method} ({shown})"
    return labels


def group_systems(runs: Sequence[Run]) -> list[System]:
    """Group runs into systems (sorted by label); the same system and seed twice is an error."""
    buckets: dict[str, list[Run]] = {}
    for run in runs:
        buckets.setdefault(run.system_key, []).append(run)
    grouped = [sorted(bucket, key=lambda run: (run.seed, run.name)) for _, bucket in sorted(buckets.items())]
    for bucket in grouped:
        for first, second in itertools.pairwise(bucket):
            if first.seed == second.seed:
                raise UserInputError(
                    f"{first.path} and {second.path} are the same configuration and seed {first.seed}: "
                    "give each run once"
                )
    labels = _labels([bucket[0] for bucket in grouped])
    return sorted(
        (System(label, tuple(bucket)) for label, bucket in zip(labels, grouped, strict=True)),
        key=lambda system: system.label,
    )


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def compatibility_problems(runs: Sequence[Run]) -> list[str]:
    """Why these runs should not be compared (different budgets, tasks or label sets); empty when fine."""
    problems = []
    for what, value in (
        ("tasks", lambda run: run.task),
        ("label sets", lambda run: ", ".join(run.labels)),
        ("budgets", lambda run: run.budget),
    ):
        values: dict[str, list[str]] = {}
        for run in runs:
            values.setdefault(value(run), []).append(run.name)
        if len(values) > 1:
            listed = "; ".join(f"{key} ({_names(names)})" for key, names in sorted(values.items()))
            problems.append(f"{what} differ: {listed}")
    return problems


# alignment --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coverage:
    """Which languages the compared runs share."""

    compared: tuple[str, ...]
    """Languages every run predicted: the only ones any aggregate uses."""
    predicted: tuple[str, ...]
    """Languages at least one run predicted."""
    task_languages: int
    missing: Mapping[str, tuple[str, ...]]
    """Run name → languages another run predicted but this one did not (only runs that lack some)."""

    def summary(self) -> str:
        return (
            f"{len(self.compared)} languages compared (predicted by every run) of {len(self.predicted)} "
            f"predicted by any run; the task has {self.task_languages}"
        )

    def details(self, limit: int = 8) -> list[str]:
        return [
            f"{run} lacks {len(codes)}: {_names(list(codes), limit)}" for run, codes in self.missing.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": list(self.compared),
            "predicted": list(self.predicted),
            "task_languages": self.task_languages,
            "missing": {run: list(codes) for run, codes in self.missing.items()},
        }


@dataclass(frozen=True)
class AlignedLanguage:
    """One compared language: the items every run predicted (sorted by id) and each system's predictions."""

    ids: tuple[str, ...]
    gold: np.ndarray
    pred: Mapping[str, np.ndarray]
    """System label → ``(seeds, items)`` predicted labels."""
    tied: Mapping[str, tuple[Mapping[int, tuple[int, ...]], ...]] = field(default_factory=dict)
    """System label → per seed, item position → labels tied at the top (absent: no ties)."""

    def ties(self, label: str) -> tuple[Mapping[int, tuple[int, ...]], ...]:
        return self.tied.get(label) or tuple({} for _ in range(self.pred[label].shape[0]))

    def correct(self, label: str) -> np.ndarray:
        """``(seeds, items)`` credit: 0/1, or 1/k for a tie of k labels that holds the gold label."""
        return np.stack(
            [
                credit(self.gold, pred, tied)
                for pred, tied in zip(self.pred[label], self.ties(label), strict=True)
            ]
        )


@dataclass
class ComparisonSet:
    """Runs grouped into systems and aligned on the languages and items they share."""

    systems: tuple[System, ...]
    table: LanguageTable
    num_labels: int
    coverage: Coverage
    items: Mapping[str, AlignedLanguage]
    """Compared languages, in display order (Joshi class 5 … 0, unclassified; then code)."""
    warnings: tuple[str, ...]
    _scores: dict[str, dict[str, LanguageScores]] = field(default_factory=dict, repr=False)

    def system(self, name: str, *, option: str = "--reference") -> System:
        """A system by label, or by method name when only one system runs that method."""
        matches = [s for s in self.systems if s.label == name] or [
            s for s in self.systems if s.method == name
        ]
        if len(matches) == 1:
            return matches[0]
        labels = ", ".join(repr(s.label) for s in self.systems)
        if not matches:
            raise UserInputError(f"{option}: no system {name!r} among the runs; systems: {labels}")
        raise UserInputError(f"{option}: {name!r} matches {len(matches)} systems; use a full label: {labels}")

    def scores(self, system: System) -> dict[str, LanguageScores]:
        """Per-language scores of a system (seed means with bootstrap intervals), computed once."""
        if system.label not in self._scores:
            self._scores[system.label] = score_languages(
                {
                    lang: (aligned.gold, aligned.pred[system.label], aligned.ties(system.label))
                    for lang, aligned in self.items.items()
                },
                self.num_labels,
            )
        return self._scores[system.label]

    def groups(self, by: GroupBy, names: Sequence[str] = ()) -> list[tuple[str, tuple[str, ...]]]:
        """(name, task languages) of every Joshi class, or of named groups: ``names`` when given (any group
        the task defines), else those of :data:`GROUPS` the task defines."""
        if by == "joshi":
            return [(label, self.table.groups.get(label, ())) for label in joshi_label_order()]
        unknown = [name for name in names if name not in self.table.groups]
        if unknown:
            raise UserInputError(
                f"--group: no group {', '.join(map(repr, unknown))} in this task; "
                f"groups: {', '.join(sorted(self.table.groups))}"
            )
        chosen = list(dict.fromkeys(names)) or [name for name in GROUPS if name in self.table.groups]
        return [(name, self.table.groups[name]) for name in chosen]

    def compared_in(self, codes: Iterable[str]) -> list[str]:
        """The compared languages among ``codes``, in display order."""
        wanted = set(codes)
        return [lang for lang in self.items if lang in wanted]


def _display_order(table: LanguageTable, codes: Iterable[str]) -> list[str]:
    rank = {label: i for i, label in enumerate(joshi_label_order())}
    return sorted(codes, key=lambda code: (rank[table[code].joshi_label], code))


def _align(lang: str, systems: Sequence[System], force: bool, warnings: list[str]) -> AlignedLanguage:
    runs = [(system, run) for system in systems for run in system.runs]
    id_sets = [frozenset(run.predictions[lang].ids) for _, run in runs]
    shared = frozenset.intersection(*id_sets)
    if any(ids != shared for ids in id_sets):
        if not force:
            raise UserInputError(
                f"{lang}: the runs were tested on different items ({len(shared)} shared of "
                f"{len(frozenset.union(*id_sets))}); pass --force to compare on the shared items"
            )
        warnings.append(f"{lang}: compared on the {len(shared)} test items every run predicted")
    ids = tuple(sorted(shared))
    if not ids:
        raise UserInputError(f"{lang}: the runs share no test item")
    gold: np.ndarray | None = None
    pred: dict[str, list[np.ndarray]] = {}
    tied: dict[str, list[dict[int, tuple[int, ...]]]] = {}
    for system, run in runs:
        items = run.predictions[lang]
        position = {item: i for i, item in enumerate(items.ids)}
        order = np.array([position[item] for item in ids])
        aligned_at = {int(original): new for new, original in enumerate(order)}
        tied.setdefault(system.label, []).append(
            {aligned_at[row]: labels for row, labels in items.tied.items() if row in aligned_at}
        )
        if gold is None:
            gold = items.gold[order]
        elif not np.array_equal(gold, items.gold[order]):
            raise UserInputError(
                f"{lang}: {run.name} has other gold labels for the same item ids (other data)"
            )
        pred.setdefault(system.label, []).append(items.pred[order])
    assert gold is not None  # runs is never empty
    return AlignedLanguage(
        ids,
        gold,
        {label: np.stack(rows) for label, rows in pred.items()},
        {label: tuple(per_seed) for label, per_seed in tied.items() if any(per_seed)},
    )


def prepare(paths: Iterable[Path], *, force: bool = False, registry: Registry | None = None) -> ComparisonSet:
    """Load, group, check and align runs for comparison.

    Raises :class:`UserInputError` when the runs cannot be compared: different budgets, tasks or label sets
    (unless ``force``; then a warning is kept), test items that differ (unless ``force``: then the shared
    items are used), the same item with different gold labels, no language in common, or a task no loaded
    plugin provides.
    """
    runs = load_runs(paths)
    systems = tuple(group_systems(runs))
    warnings: list[str] = []
    problems = compatibility_problems(runs)
    if problems and not force:
        raise UserInputError(
            "these runs are not comparable: " + " | ".join(problems) + ". Pass --force to compare anyway."
        )
    warnings.extend(f"compared with --force although {problem}" for problem in problems)
    warnings.extend(
        f"{run.name} is not finished (status {run.record.status!r}): only the languages it predicted count"
        for run in runs
        if run.record.status != "complete"
    )

    registry = registry or load_registry()
    task_name = systems[0].runs[0].task_name
    if task_name not in registry.tasks:
        raise UserInputError(
            f"the runs are on task {task_name!r}, which no loaded plugin provides; "
            f"tasks: {', '.join(registry.tasks)}"
        )
    table = registry.tasks[task_name].languages
    predicted = frozenset.union(*(frozenset(run.predictions) for run in runs))
    unknown = sorted(predicted - set(table.languages))
    if unknown:
        raise UserInputError(f"languages unknown to task {task_name!r}: {_names(unknown, 8)}")
    compared = frozenset.intersection(*(frozenset(run.predictions) for run in runs))
    if not compared:
        raise UserInputError("no language is predicted by every run: nothing to compare")
    coverage = Coverage(
        compared=tuple(_display_order(table, compared)),
        predicted=tuple(_display_order(table, predicted)),
        task_languages=len(table),
        missing={
            run.name: tuple(_display_order(table, predicted - set(run.predictions)))
            for run in sorted(runs, key=lambda run: run.name)
            if predicted - set(run.predictions)
        },
    )
    items = {lang: _align(lang, systems, force, warnings) for lang in coverage.compared}
    return ComparisonSet(
        systems=systems,
        table=table,
        num_labels=len(systems[0].runs[0].labels),
        coverage=coverage,
        items=items,
        warnings=tuple(warnings),
    )


# paired comparison of two systems ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LanguageComparison:
    result: PairedResult
    adjusted_p: float
    verdict: Verdict


@dataclass(frozen=True)
class GroupComparison:
    """Two systems over the compared languages of one group."""

    name: str
    size: int
    """Languages of the group in the task."""
    compared: int
    accuracy_a: float
    accuracy_b: float
    difference: Estimate
    """Mean per-language difference, two-stage bootstrap interval (languages, then items): seeds fixed."""
    record: WinTieLoss
    """Per-language item-level verdicts (seeds fixed)."""
    wilcoxon: SignedRankResult
    """Signed-rank test of the per-language differences (seeds fixed)."""
    run_level: RunLevelResult | None
    """The same Δ with the runs as the unit (:mod:`xpe_bench.run_level`); None when a system has a single
    run, which has no run-level spread (:attr:`run_level_missing` says which)."""
    run_level_missing: str
    """Why there is no run-level test (e.g. ``"1 run: no run-level test"``); empty when there is one."""


@dataclass(frozen=True)
class Pairwise:
    """System A against system B on every compared language (differences are A - B)."""

    a: System
    b: System
    test: PairedTestName
    correction: Correction
    alpha: float
    languages: Mapping[str, LanguageComparison]
    seed_accuracy: Mapping[str, tuple[np.ndarray, np.ndarray]]
    """Language → each run's accuracy, ``(runs of A,)`` and ``(runs of B,)`` in seed order."""
    paired_seeds: bool
    """Whether the run-level test pairs seed k of A with seed k of B."""

    def run_level(self, langs: Sequence[str]) -> tuple[RunLevelResult | None, str]:
        """The run-level test over ``langs``, or None and why there is none."""
        single = [system.label for system in (self.a, self.b) if len(system.runs) < 2]
        if single:
            return None, "1 run: no run-level test" if len(single) == 1 else "1 run each: no run-level test"
        per_run_a = np.stack([self.seed_accuracy[lang][0] for lang in langs], axis=1)
        per_run_b = np.stack([self.seed_accuracy[lang][1] for lang in langs], axis=1)
        return run_level_test(per_run_a, per_run_b, paired=self.paired_seeds), ""

    def group(self, name: str, codes: Iterable[str]) -> GroupComparison | None:
        """Aggregate over the compared languages among ``codes``; None when there are none."""
        codes = frozenset(codes)
        langs = [lang for lang in self.languages if lang in codes]
        if not langs:
            return None
        results = [self.languages[lang].result for lang in langs]
        run_level, missing = self.run_level(langs)
        return GroupComparison(
            name=name,
            size=len(codes),
            compared=len(langs),
            accuracy_a=float(np.mean([r.accuracy_a for r in results])),
            accuracy_b=float(np.mean([r.accuracy_b for r in results])),
            difference=two_stage_interval(
                np.array([r.difference.value for r in results]), np.stack([r.replicates for r in results])
            ),
            record=WinTieLoss.count([self.languages[lang].verdict for lang in langs]),
            wilcoxon=wilcoxon_signed_rank([r.difference.value for r in results]),
            run_level=run_level,
            run_level_missing=missing,
        )


def compare_pair(
    comparison: ComparisonSet,
    a: System,
    b: System,
    *,
    test: PairedTestName = "permutation",
    correction: Correction = "holm",
    mid_p: bool = False,
    alpha: float = ALPHA,
    paired_seeds: bool = False,
) -> Pairwise:
    """Paired tests of A against B on every compared language, corrected over those languages; with
    ``paired_seeds`` the run-level test pairs the runs by seed (both systems must have run the same seeds)."""
    if paired_seeds and a.seeds != b.seeds:
        raise UserInputError(
            f"--paired-seeds needs the same seeds in both systems; {a.label} has "
            f"{', '.join(map(str, a.seeds))} and {b.label} has {', '.join(map(str, b.seeds))}"
        )
    if test == "mcnemar":
        several = [s for s in (a, b) if len(s.seeds) > 1]
        if several:
            raise UserInputError(
                f"--test mcnemar compares one seed with one seed, but {several[0].label} has seeds "
                f"{', '.join(map(str, several[0].seeds))}; use --test permutation (seed-averaged items)"
            )
        fractional = [
            s for s in (a, b) if any(aligned.tied.get(s.label) for aligned in comparison.items.values())
        ]
        if fractional:
            raise UserInputError(
                f"--test mcnemar needs right/wrong items, but {fractional[0].label} has ties credited 1/k; "
                "use --test permutation"
            )
    results = paired_tests(
        {
            lang: (aligned.correct(a.label), aligned.correct(b.label))
            for lang, aligned in comparison.items.items()
        },
        test=test,
        mid_p=mid_p,
        alpha=alpha,
    )
    adjusted = adjust_pvalues([r.p_value for r in results.values()], correction)
    return Pairwise(
        a=a,
        b=b,
        test=test,
        correction=correction,
        alpha=alpha,
        languages={
            lang: LanguageComparison(r, float(p), verdict(r.difference.value, float(p), alpha))
            for (lang, r), p in zip(results.items(), adjusted, strict=True)
        },
        seed_accuracy={
            lang: (aligned.correct(a.label).mean(axis=1), aligned.correct(b.label).mean(axis=1))
            for lang, aligned in comparison.items.items()
        },
        paired_seeds=paired_seeds,
    )
