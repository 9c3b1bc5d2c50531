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
import string
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpe_bench.errors import UserInputError
from xpe_bench.languages import (
    GroupSpec,
    Language,
    LanguageTable,
    language_from_mapping,
    parse_language_table,
)
from xpe_bench.paths import DATA_ENV

if TYPE_CHECKING:  # imported where splits are loaded: listing tasks must not pay for datasets (and torch)
    import datasets

SPLITS = ("train", "dev", "test")
FEATURE_NAMES = ("lang", "id", "text", "label")
TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "version",
        "description",
        "citation",
        "labels",
        "label_descriptions",
        "languages",
        "groups",
        "labels_per_language",
        "default_sources",
        "default_targets",
        "test_only",
        "fields",
        "splits",
        "local",
        "hub",
        "data_root",
    }
)
"""Every field a task file may have (docs/tasks.md documents each); anything else is a typo, reported."""

BUILTIN_TABLES = {
    "afrisenti_languages.csv": "ea63d410f7e7de23be15a30291ca23fadd6e68bc5275243d1a5071df890efc9c",
    "nusax-senti_languages.csv": "d3751be8a7cc62fc90ab0c416d09d69c3c27f269483fae249c8b019b05bd93e2",
    "sib200_languages.csv": "2a3abb3c83e32eb44def754af2b5a1cddb837ba7b8a57f7d292a9cd7ff16e9c1",
}
"""The built-in language tables (``xpe_bench/resources``) by name, pinned to the SHA-256 of their content.

A task's identity has always been the SHA-256 of its TOML alone, and every stored run of a built-in task is
keyed by it. While a task reads one of these tables *unchanged*, that hash still covers the whole definition
(the TOML names the table and this pin fixes its bytes), so it stays as it was. Any other table, or an edited
built-in one, is hashed together with the TOML (:func:`definition_digest`): editing a table changes the
identity of every run of the tasks that read it.
"""
DEFINITION_SCHEME = b"xpe-bench task definition v2"

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
    labels_per_language: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Language -> the only labels its items take and its predictions may name (the rest of the languages
    take every label); see :meth:`allowed_label_mask`."""
    data_root: Path | None = None
    """Where this task's data lives when neither ``--data-dir`` nor ``$XPE_BENCH_DATA`` is given."""
    definition_sha256: str = ""
    """SHA-256 of the whole definition (:func:`definition_digest`): part of every run's identity."""

    @classmethod
    def from_toml(cls, path: Path) -> TaskSpec:
        """Load and validate a task file; any fault is one :class:`UserInputError` line naming ``path``.

        A ``languages = "<file>.csv"`` table resolves next to the task file first, then among the built-in
        tables of ``xpe_bench.resources``; ``[[languages]]`` rows declare it inline.
        """
        path = Path(path)
        try:
            raw_bytes = path.read_bytes()
            raw = tomllib.loads(raw_bytes.decode("utf-8"))
        except OSError as exc:
            raise UserInputError(f"{path}: cannot read the task file ({exc.strerror or exc})") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UserInputError(f"{path}: not a valid TOML task file: {exc}") from exc
        try:
            languages, digest = _languages_and_digest(raw, raw_bytes, path)
            return cls._from_mapping(raw, languages, digest, path.parent)
        except KeyError as exc:
            raise UserInputError(f"{path}: invalid task definition: missing required field {exc}") from exc
        except (ValueError, TypeError, UserInputError) as exc:
            raise UserInputError(f"{path}: invalid task definition: {exc}") from exc

    @classmethod
    def _from_mapping(
        cls, raw: Mapping[str, Any], languages: list[Language], digest: str, folder: Path
    ) -> TaskSpec:
        unknown = set(raw) - TOP_LEVEL_KEYS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; valid: {', '.join(sorted(TOP_LEVEL_KEYS))}")
        groups = [GroupSpec.from_mapping(name, spec) for name, spec in raw.get("groups", {}).items()]
        table = LanguageTable(languages, groups)
        local = dict(raw["local"])
        hub = raw.get("hub")
        labels = tuple(raw["labels"])
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        fields = dict(raw["fields"])
        TextTemplate.parse(fields["text"])  # a malformed template fails here, not at the first data file
        data_root = raw.get("data_root")
        if data_root is not None and not isinstance(data_root, str):
            raise ValueError("data_root must be a path (a string), relative to the task file or absolute")
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            description=raw.get("description", ""),
            citation=raw.get("citation", ""),
            labels=labels,
            label_descriptions=_label_descriptions(raw, labels),
            languages=table,
            fields=fields,
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
            labels_per_language=_labels_per_language(raw, labels, table),
            data_root=(folder / data_root).resolve() if data_root is not None else None,
            definition_sha256=digest,
        )

    def labels_of(self, lang: str) -> tuple[str, ...]:
        """The labels ``lang`` may take: its declared subset, else every label of the task."""
        return self.labels_per_language.get(lang, self.labels)

    def allowed_label_mask(self, lang: str) -> np.ndarray | None:
        """``(num_labels,)`` booleans of the labels ``lang`` may take, or ``None`` when it may take all."""
        subset = self.labels_per_language.get(lang)
        if subset is None:
            return None
        return np.array([label in subset for label in self.labels])

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
        } | ({"labels_per_language": dict(self.labels_per_language)} if self.labels_per_language else {})


def definition_digest(toml_bytes: bytes, table_name: str, table_bytes: bytes) -> str:
    """SHA-256 of a task file together with the language table it reads (scheme v2, length-prefixed so no
    two different definitions hash the same bytes)."""
    digest = hashlib.sha256(DEFINITION_SCHEME)
    for part in (toml_bytes, table_name.encode("utf-8"), table_bytes):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _languages_and_digest(raw: Mapping[str, Any], raw_bytes: bytes, path: Path) -> tuple[list[Language], str]:
    """The task's languages (from its table file or inline rows) and the SHA-256 of its whole definition."""
    value = raw["languages"]
    if isinstance(value, list):  # [[languages]] rows: the TOML is the whole definition
        rows = [language_from_mapping(row, f"languages[{i}]") for i, row in enumerate(value)]
        return rows, hashlib.sha256(raw_bytes).hexdigest()
    if not isinstance(value, str):
        raise ValueError("languages must name a CSV table (a string) or be [[languages]] rows")
    beside = path.parent / value
    builtin = resources.files("xpe_bench.resources").joinpath(value)
    if beside.is_file():
        table_bytes, origin, is_builtin = beside.read_bytes(), str(beside), False
    elif value in BUILTIN_TABLES and builtin.is_file():
        table_bytes, origin, is_builtin = builtin.read_bytes(), f"xpe_bench/resources/{value}", True
    else:
        raise ValueError(
            f"language table {value!r} not found next to the task file ({beside}) nor among the built-in "
            f"tables ({', '.join(BUILTIN_TABLES)})"
        )
    try:
        text = table_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{origin}: the language table is not UTF-8 text ({exc})") from exc
    languages = parse_language_table(text, origin)
    if is_builtin and hashlib.sha256(table_bytes).hexdigest() == BUILTIN_TABLES[value]:
        return languages, hashlib.sha256(raw_bytes).hexdigest()
    return languages, definition_digest(raw_bytes, value, table_bytes)


class TextTemplate:
    """How an item's text is built from a data file's columns.

    ``fields.text`` is a column name (``"text"``), or, when it contains ``{``, a template over several
    columns: ``"{headline}\n{body}"`` joins the two with a newline. Everything between braces is a column
    name taken literally (no format specs, conversions, attribute or index lookups); ``{{`` and ``}}`` are
    literal braces.
    """

    def __init__(self, pieces: tuple[tuple[str, str | None], ...]) -> None:
        self.pieces = pieces
        self.columns = tuple(dict.fromkeys(name for _, name in pieces if name is not None))

    @classmethod
    def parse(cls, template: str) -> TextTemplate:
        if not isinstance(template, str) or not template:
            raise ValueError("fields.text must be a column name or a template such as '{headline}\\n{body}'")
        if "{" not in template and "}" not in template:
            return cls((("", template),))
        pieces: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"fields.text template {template!r}: {exc}") from exc
        for literal, name, spec, conversion in parsed:
            if name is not None and (not name or spec or conversion):
                raise ValueError(
                    f"fields.text template {template!r}: each {{…}} must hold just a column name "
                    "(no format spec, conversion or positional field)"
                )
            pieces.append((literal, name))
        if not any(name for _, name in pieces):
            raise ValueError(f"fields.text template {template!r} names no column")
        return cls(tuple(pieces))

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(literal + (values[name] if name is not None else "") for literal, name in self.pieces)


def _labels_per_language(
    raw: Mapping[str, Any], labels: tuple[str, ...], table: LanguageTable
) -> dict[str, tuple[str, ...]]:
    subsets = {}
    for lang, given in raw.get("labels_per_language", {}).items():
        if lang not in table:
            raise ValueError(f"labels_per_language: unknown language {lang!r}")
        if not isinstance(given, list) or len(given) < 2 or len(set(given)) != len(given):
            raise ValueError(f"labels_per_language.{lang} must list at least two distinct labels")
        unknown = [label for label in given if label not in labels]
        if unknown:
            raise ValueError(
                f"labels_per_language.{lang}: unknown labels {unknown}; valid: {', '.join(labels)}"
            )
        subsets[lang] = tuple(label for label in labels if label in given)  # in the task's label order
    return subsets


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
            own = self.task.data_root
            overridden = (
                f"; the task's own data_root {own} is overridden by --data-dir or ${DATA_ENV}"
                if own is not None and own != self.root
                else ""
            )
            raise UserInputError(
                f"missing data file {path} (task {self.task.name}, language {lang}, split {split}); "
                f"expected layout <data-root>/{self.task.local.path}{overridden}"
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
        template = TextTemplate.parse(fields["text"])
        wanted = [*template.columns, fields["label"]] + ([fields["id"]] if "id" in fields else [])
        missing = [name for name in wanted if name not in header]
        if missing:
            raise UserInputError(
                f"{path}:1: wrong columns: missing {missing}; header is {header}, expected columns {wanted}"
            )
        text_at = {name: header.index(name) for name in template.columns}
        label_at = header.index(fields["label"])
        id_at = header.index(fields["id"]) if "id" in fields else None
        label_ids = {label: i for i, label in enumerate(self.task.labels)}
        allowed = self.task.labels_of(lang)
        columns: dict[str, list[Any]] = {name: [] for name in FEATURE_NAMES}
        for row in reader:
            # reader.line_num counts physical lines, so quoted multi-line fields keep positions exact.
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                raise UserInputError(f"{where}: {len(row)} fields, but the header has {len(header)}")
            label = row[label_at].strip()
            if label not in allowed:
                raise UserInputError(f"{where}: {self._label_fault(lang, label)}")
            columns["lang"].append(lang)
            columns["id"].append(row[id_at] if id_at is not None else str(reader.line_num))
            columns["text"].append(template.render({name: row[at] for name, at in text_at.items()}))
            columns["label"].append(label_ids[label])
        if not columns["id"]:
            return self._empty_or_fail(path, lang, split, "the split has a header but no rows")
        return datasets.Dataset.from_dict(columns, features=_features(self.task.labels))

    def _label_fault(self, lang: str, label: str) -> str:
        if label in self.task.labels:
            return (
                f"label {label!r} is not among the labels of {lang} (labels_per_language): "
                f"{', '.join(self.task.labels_of(lang))}"
            )
        return f"unknown label {label!r}; valid labels: {', '.join(self.task.labels)}"

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
        bad = sorted({label for label in labels if label not in self.task.labels_of(lang)})
        if bad:
            raise UserInputError(f"{hub.id} ({config}, {hub_split}): {self._label_fault(lang, bad[0])}")
        template = TextTemplate.parse(fields["text"])
        missing = [name for name in template.columns if name not in ds.column_names]
        if missing:
            raise UserInputError(
                f"{hub.id} ({config}, {hub_split}): no column {missing[0]!r} (fields.text); columns: "
                f"{', '.join(ds.column_names)}"
            )
        texts = zip(*(ds[name] for name in template.columns), strict=True)
        ids = ds[fields["id"]] if "id" in fields else range(len(ds))
        columns = {
            "lang": [lang] * len(ds),
            "id": [str(i) for i in ids],
            "text": [template.render(dict(zip(template.columns, row, strict=True))) for row in texts],
            "label": [label_ids[label] for label in labels],
        }
        return datasets.Dataset.from_dict(columns, features=_features(self.task.labels))
