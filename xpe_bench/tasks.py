"""Tasks: declarative definitions (``tasks/*.toml``) and validated loading of their splits.

A task file names its labels, fields, splits, language metadata and groups, the local file layout under the
data root and the Hugging Face hub dataset that users with network access load instead. Local files are read
with the standard ``csv`` module rather than a dataframe parser, because quoting differs between sources
(SIB-200 must be read without quote processing) and because validation errors must name file and line.
Both paths produce the same :class:`datasets.Dataset` schema: ``lang``, ``id``, ``text``, ``label``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpe_bench.errors import UserInputError
from xpe_bench.languages import GroupSpec, LanguageTable, read_language_table

if TYPE_CHECKING:  # imported where splits are loaded: listing tasks must not pay for datasets (and torch)
    import datasets

SPLITS = ("train", "dev", "test")
FEATURE_NAMES = ("lang", "id", "text", "label")

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class LocalLayout:
    path: str
    """Path template relative to the data root, with ``{lang}`` and ``{split}``."""
    format: str = "tsv"
    quoting: bool | Mapping[str, bool] = False
    """CSV quote processing, for all splits or per split (AfriSenti quotes only its test files)."""
    split_names: Mapping[str, str] = field(default_factory=dict)
    """Our split name -> the file's split name (e.g. ``dev`` -> ``valid``)."""
    lang_dirs: Mapping[str, str] = field(default_factory=dict)
    """Language code -> folder name, where folders are not named by code."""

    def quoting_for(self, split: str) -> bool:
        return self.quoting if isinstance(self.quoting, bool) else bool(self.quoting.get(split, False))

    def file_for(self, root: Path, lang: str, split: str) -> Path:
        rel = self.path.format(lang=self.lang_dirs.get(lang, lang), split=self.split_names.get(split, split))
        return root / rel


@dataclass(frozen=True)
class HubSource:
    id: str
    config: str = "{lang}"
    splits: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One classification task, as declared in its TOML file."""

    name: str
    version: int
    description: str
    labels: tuple[str, ...]
    languages: LanguageTable
    fields: Mapping[str, str]
    local: LocalLayout
    hub: HubSource | None
    default_sources: str
    default_targets: str
    citation: str = ""
    label_descriptions: tuple[str, ...] = ()
    """Natural-language description per label (same order), for zero-shot methods; defaults to the names."""
    test_only: tuple[str, ...] = ()
    """Languages without training data: valid targets, never sources."""
    definition_sha256: str = ""

    @classmethod
    def from_toml(cls, path: Path) -> TaskSpec:
        raw_bytes = path.read_bytes()
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
        try:
            return cls._from_mapping(raw, hashlib.sha256(raw_bytes).hexdigest())
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: invalid task definition: {exc}") from exc

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any], digest: str) -> TaskSpec:
        table_file = resources.files("xpe_bench.resources").joinpath(raw["languages"])
        with resources.as_file(table_file) as table_path:
            languages = read_language_table(table_path)
        groups = [GroupSpec.from_mapping(name, spec) for name, spec in raw.get("groups", {}).items()]
        local = dict(raw["local"])
        hub = raw.get("hub")
        labels = tuple(raw["labels"])
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            description=raw.get("description", ""),
            citation=raw.get("citation", ""),
            labels=labels,
            label_descriptions=_label_descriptions(raw, labels),
            languages=LanguageTable(languages, groups),
            fields=dict(raw["fields"]),
            local=LocalLayout(
                path=local["path"],
                format=local.get("format", "tsv"),
                quoting=_quoting(local.get("quoting", False)),
                split_names=dict(local.get("split_names", {})),
                lang_dirs=dict(local.get("lang_dirs", {})),
            ),
            hub=HubSource(hub["id"], hub.get("config", "{lang}"), dict(hub.get("splits", {})))
            if hub
            else None,
            default_sources=raw.get("default_sources", "all"),
            default_targets=raw.get("default_targets", "all"),
            test_only=tuple(raw.get("test_only", ())),
            definition_sha256=digest,
        )

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "labels": list(self.labels),
            "languages": len(self.languages),
            "groups": list(self.languages.groups),
            "hub_id": self.hub.id if self.hub else None,
            "definition_sha256": self.definition_sha256,
        }


def _quoting(raw: Any) -> bool | dict[str, bool]:
    if isinstance(raw, bool):
        return raw
    if (
        isinstance(raw, Mapping)
        and set(raw) <= set(SPLITS)
        and all(isinstance(v, bool) for v in raw.values())
    ):
        return dict(raw)
    raise ValueError(
        f"local.quoting must be true/false or a table of splits ({', '.join(SPLITS)}) to booleans"
    )


def _label_descriptions(raw: Mapping[str, Any], labels: tuple[str, ...]) -> tuple[str, ...]:
    given = raw.get("label_descriptions", {})
    unknown = set(given) - set(labels)
    if unknown:
        raise ValueError(f"label_descriptions for unknown labels {sorted(unknown)}")
    return tuple(given.get(label, label) for label in labels)


def builtin_task_specs() -> list[TaskSpec]:
    """Every task file shipped in ``tasks/``."""
    folder = resources.files("xpe_bench_tasks")
    specs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                specs.append(TaskSpec.from_toml(path))
    return specs


def _decode(raw: bytes, path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is reported with its line, which a user can open."""
    try:  # not utf-8-sig: its error offsets would not count the byte-order mark
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserInputError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); data files "
            "must be UTF-8 text"
        ) from exc


def _features(labels: tuple[str, ...]) -> datasets.Features:
    import datasets

    return datasets.Features(
        {
            "lang": datasets.Value("string"),
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(labels)),
        }
    )


class TaskData:
    """Loads and validates one task's splits from a local data root or, without one, from the hub.

    Loaded splits are memoised; :attr:`fingerprints` records a SHA-256 per file (or hub revision) read, which
    run manifests store so a result can be traced to the exact data it saw.
    """

    def __init__(self, task: TaskSpec, root: Path | None) -> None:
        self.task = task
        self.root = root
        self.fingerprints: dict[str, str] = {}
        self._cache: dict[tuple[str, str], datasets.Dataset] = {}

    @property
    def origin(self) -> str:
        if self.root is not None:
            return f"local:{self.root}"
        return f"hub:{self.task.hub.id}" if self.task.hub else "unavailable"

    def load(self, lang: str, split: str) -> datasets.Dataset:
        if split not in SPLITS:
            raise UserInputError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if lang not in self.task.languages:
            raise UserInputError(f"task {self.task.name!r} has no language {lang!r}")
        key = (lang, split)
        if key not in self._cache:
            if self.root is not None:
                self._cache[key] = self._load_local(lang, split)
            else:
                self._cache[key] = self._load_hub(lang, split)
        return self._cache[key]

    def _load_local(self, lang: str, split: str) -> datasets.Dataset:
        import datasets

        path = self.task.local.file_for(self.root, lang, split)  # type: ignore[arg-type]
        if not path.is_file():
            raise UserInputError(
                f"missing data file {path} (task {self.task.name}, language {lang}, split {split}); "
                f"expected layout <data-root>/{self.task.local.path}"
            )
        raw = path.read_bytes()
        self.fingerprints[str(path.relative_to(self.root))] = hashlib.sha256(raw).hexdigest()  # type: ignore[arg-type]
        delimiter = "\t" if self.task.local.format == "tsv" else ","
        quoting = csv.QUOTE_MINIMAL if self.task.local.quoting_for(split) else csv.QUOTE_NONE
        # StringIO(newline="") splits records only at \n/\r, never at U+2028 or U+0085 inside a text.
        text = io.StringIO(_decode(raw, path), newline="")
        reader = csv.reader(text, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            return self._empty_or_fail(path, lang, split, "the file is empty (no header)")
        fields = self.task.fields
        wanted = [fields["text"], fields["label"]] + ([fields["id"]] if "id" in fields else [])
        missing = [name for name in wanted if name not in header]
        if missing:
            raise UserInputError(
                f"{path}:1: wrong columns: missing {missing}; header is {header}, expected columns {wanted}"
            )
        text_at, label_at = header.index(fields["text"]), header.index(fields["label"])
        id_at = header.index(fields["id"]) if "id" in fields else None
        label_ids = {label: i for i, label in enumerate(self.task.labels)}
        columns: dict[str, list[Any]] = {name: [] for name in FEATURE_NAMES}
        for row in reader:
            # reader.line_num counts physical lines, so quoted multi-line fields keep positions exact.
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                raise UserInputError(f"{where}: {len(row)} fields, but the header has {len(header)}")
            label = row[label_at].strip()
            if label not in label_ids:
                raise UserInputError(
                    f"{where}: unknown label {label!r}; valid labels: {', '.join(self.task.labels)}"
                )
            columns["lang"].append(lang)
            columns["id"].append(row[id_at] if id_at is not None else str(reader.line_num))
            columns["text"].append(row[text_at])
            columns["label"].append(label_ids[label])
        if not columns["id"]:
            return self._empty_or_fail(path, lang, split, "the split has a header but no rows")
        return datasets.Dataset.from_dict(columns, features=_features(self.task.labels))

    def _empty_or_fail(self, path: Path, lang: str, split: str, why: str) -> datasets.Dataset:
        import datasets

        if split == "train" and lang in self.task.test_only:
            return datasets.Dataset.from_dict(
                {n: [] for n in FEATURE_NAMES}, features=_features(self.task.labels)
            )
        raise UserInputError(f"{path}: empty split: {why}")

    def _load_hub(self, lang: str, split: str) -> datasets.Dataset:
        import datasets

        hub = self.task.hub
        if hub is None:
            raise UserInputError(
                f"task {self.task.name!r} has no local data root and no hub dataset; pass --data-dir "
                f"or set $XPE_BENCH_DATA"
            )
        config = hub.config.format(lang=lang)
        hub_split = hub.splits.get(split, split)
        try:
            ds = datasets.load_dataset(hub.id, config, split=hub_split)
        except Exception as exc:  # network, auth, unknown config: all the user's to fix
            raise UserInputError(
                f"could not load {hub.id} ({config}, {hub_split}) from the Hugging Face hub: {exc}. "
                f"Without network access pass --data-dir or set $XPE_BENCH_DATA to a local copy."
            ) from exc
        self.fingerprints[f"hub:{hub.id}/{config}/{hub_split}"] = ds._fingerprint
        fields = self.task.fields
        label_ids = {label: i for i, label in enumerate(self.task.labels)}
        labels = list(ds[fields["label"]])
        feature = ds.features[fields["label"]]
        if isinstance(feature, datasets.ClassLabel):  # stored as ids of the dataset's own label order
            labels = [feature.int2str(label) for label in labels]
        bad = sorted({label for label in labels if label not in label_ids})
        if bad:
            raise UserInputError(f"{hub.id} ({config}, {hub_split}): unknown labels {bad}")
        ids = ds[fields["id"]] if "id" in fields else range(len(ds))
        columns = {
            "lang": [lang] * len(ds),
            "id": [str(i) for i in ids],
            "text": list(ds[fields["text"]]),
            "label": [label_ids[label] for label in labels],
        }
        return datasets.Dataset.from_dict(columns, features=_features(self.task.labels))
