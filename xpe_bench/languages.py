"""Language metadata and named language groups.

Every task ships a metadata table (one row per language variety) and declares named groups over it. Groups
are either explicit code lists or filters over the metadata columns, so that e.g. ``seen-92`` is *derived*
from the CC100 flag rather than copied by hand; declared sizes are checked when the table is loaded, so a
metadata change that silently moves a language between groups fails loudly instead.

Joshi classes follow Joshi et al. (2020), "The State and Fate of Linguistic Diversity and Inclusion in the
NLP World" (ACL): 0 (left-behinds) to 5 (winners). Varieties without a class are ``unclassified`` and are
never dropped from any table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xpe_bench.errors import UserInputError

JOSHI_CLASSES = (0, 1, 2, 3, 4, 5)
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    joshi: int | None
    family: str
    script: str
    region: str
    cc100: bool
    """Whether XLM-R's pretraining corpus (CC100) covers the variety ("seen" languages)."""
    low_performing: bool = False

    @property
    def joshi_label(self) -> str:
        """``joshi-K`` or ``unclassified``: the key results are grouped under."""
        return UNCLASSIFIED if self.joshi is None else f"joshi-{self.joshi}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"joshi_class": self.joshi_label}


def joshi_label_order() -> list[str]:
    """Joshi class labels from the best-resourced class down to ``unclassified`` (display order)."""
    return [f"joshi-{k}" for k in reversed(JOSHI_CLASSES)] + [UNCLASSIFIED]


def _parse_bool(value: str | bool, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in {"1", "true", "True"}:
        return True
    if value in {"0", "false", "False", ""}:
        return False
    raise ValueError(f"{where}: expected 0/1, got {value!r}")


LANGUAGE_COLUMNS = ("code", "name", "joshi", "family", "script", "region", "cc100")
"""Required columns of a language table (``low_performing`` is optional)."""


def read_language_table(path: Path) -> list[Language]:
    """Read a metadata CSV with columns code,name,joshi,family,script,region,cc100[,low_performing]."""
    return parse_language_table(path.read_bytes().decode("utf-8"), str(path))


def parse_language_table(text: str, origin: str) -> list[Language]:
    """The rows of a language table's CSV ``text``; ``origin`` (a file name) prefixes every error."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = set(LANGUAGE_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{origin}: missing columns {sorted(missing)}")
    return [language_from_mapping(row, f"{origin}:{line}") for line, row in enumerate(reader, start=2)]


def language_from_mapping(row: Mapping[str, Any], where: str) -> Language:
    """One language from a table row (CSV strings) or an inline ``[[languages]]`` row (TOML values)."""
    missing = [column for column in LANGUAGE_COLUMNS if column not in row]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    joshi = str(row["joshi"]).strip()
    if joshi and (not joshi.isdigit() or int(joshi) not in JOSHI_CLASSES):
        raise ValueError(f"{where}: Joshi class must be 0-5 or empty, got {joshi!r}")
    return Language(
        code=str(row["code"]),
        name=str(row["name"]),
        joshi=int(joshi) if joshi else None,
        family=str(row["family"]),
        script=str(row["script"]),
        region=str(row["region"]),
        cc100=_parse_bool(row["cc100"], where),
        low_performing=_parse_bool(row.get("low_performing", "0") or "0", where),
    )


@dataclass(frozen=True)
class GroupSpec:
    """A named group: explicit ``codes`` or a filter (``where`` must match, ``exclude`` must not)."""

    name: str
    description: str = ""
    codes: tuple[str, ...] | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    exclude: Mapping[str, Any] = field(default_factory=dict)
    size: int | None = None
    """Expected number of languages; checked at load time."""

    @classmethod
    def from_mapping(cls, name: str, raw: Mapping[str, Any]) -> GroupSpec:
        unknown = set(raw) - {"description", "codes", "where", "exclude", "size"}
        if unknown:
            raise ValueError(f"group {name!r}: unknown keys {sorted(unknown)}")
        codes = raw.get("codes")
        return cls(
            name=name,
            description=raw.get("description", ""),
            codes=tuple(codes) if codes is not None else None,
            where=dict(raw.get("where", {})),
            exclude=dict(raw.get("exclude", {})),
            size=raw.get("size"),
        )


def _matches(language: Language, conditions: Mapping[str, Any]) -> bool:
    for key, wanted in conditions.items():
        value = getattr(language, key)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return False
    return True


class LanguageTable:
    """The languages of one task plus its named groups; resolves ``--sources``/``--targets`` values."""

    def __init__(self, languages: Iterable[Language], groups: Iterable[GroupSpec] = ()) -> None:
        self.languages: dict[str, Language] = {}
        for language in languages:
            if language.code in self.languages:
                raise ValueError(f"duplicate language code {language.code!r}")
            self.languages[language.code] = language
        self.groups: dict[str, tuple[str, ...]] = {}
        self.descriptions: dict[str, str] = {}
        self.filtered_on: dict[str, frozenset[str]] = {}
        """Group name -> the metadata fields its definition filters on (``cc100``, ``joshi``, ...)."""
        self._add("all", tuple(self.languages), "every language of the task")
        for k in JOSHI_CLASSES:
            self._add(f"joshi-{k}", self._select(joshi=k), f"Joshi class {k} (Joshi et al. 2020)")
        self._add(UNCLASSIFIED, self._select(joshi=None), "no Joshi class assigned")
        for spec in groups:
            self._add_spec(spec)

    def _select(self, **conditions: Any) -> tuple[str, ...]:
        return tuple(code for code, lang in self.languages.items() if _matches(lang, conditions))

    def _add(self, name: str, codes: tuple[str, ...], description: str) -> None:
        self.groups[name] = codes
        self.descriptions[name] = description

    def _add_spec(self, spec: GroupSpec) -> None:
        if spec.name in self.groups or spec.name in self.languages:
            raise ValueError(f"group name {spec.name!r} clashes with an existing group or language code")
        if spec.codes is not None:
            unknown = [c for c in spec.codes if c not in self.languages]
            if unknown:
                raise ValueError(f"group {spec.name!r} names unknown languages {unknown}")
            codes = tuple(spec.codes)
        else:
            for key in (*spec.where, *spec.exclude):
                if key not in Language.__dataclass_fields__:
                    raise ValueError(f"group {spec.name!r} filters on unknown field {key!r}")
            codes = tuple(
                code
                for code, lang in self.languages.items()
                if _matches(lang, spec.where) and not (spec.exclude and _matches(lang, spec.exclude))
            )
            self.filtered_on[spec.name] = frozenset((*spec.where, *spec.exclude))
        if spec.size is not None and len(codes) != spec.size:
            raise ValueError(f"group {spec.name!r} has {len(codes)} languages, declared size {spec.size}")
        self._add(spec.name, codes, spec.description)

    def __getitem__(self, code: str) -> Language:
        return self.languages[code]

    def __contains__(self, code: object) -> bool:
        return code in self.languages

    def __len__(self) -> int:
        return len(self.languages)

    def resolve(self, selection: str, *, option: str = "languages") -> list[str]:
        """Turn a group name or a comma list of codes (groups allowed inside the list) into codes.

        Order is preserved and duplicates are dropped. Unknown names raise :class:`UserInputError`
        listing the valid groups.
        """
        codes: list[str] = []
        parts = [part.strip() for part in selection.split(",") if part.strip()]
        if not parts:
            raise UserInputError(f"{option}: empty selection; give a group name or language codes")
        for part in parts:
            if part in self.groups:
                codes.extend(self.groups[part])
            elif part in self.languages:
                codes.append(part)
            else:
                raise UserInputError(
                    f"{option}: {part!r} is neither a language code nor a group of this task. "
                    f"Groups: {', '.join(self.groups)}. See `xpe-bench languages` for codes."
                )
        return list(dict.fromkeys(codes))

    def select(self, group: str | None = None, joshi: str | None = None) -> list[str]:
        """The codes of ``group`` (a group name or comma list, as :meth:`resolve`; default: all) in one Joshi
        class (``"0"``-``"5"`` or ``"unclassified"``; default: any)."""
        codes = self.resolve(group, option="--group") if group else list(self.languages)
        if joshi is None:
            return codes
        valid = [str(k) for k in JOSHI_CLASSES] + [UNCLASSIFIED]
        if joshi not in valid:
            raise UserInputError(f"--joshi: {joshi!r}; valid: {', '.join(valid)}")
        wanted = UNCLASSIFIED if joshi == UNCLASSIFIED else f"joshi-{joshi}"
        return [code for code in codes if self.languages[code].joshi_label == wanted]

    def group_of(self, code: str) -> str:
        return self.languages[code].joshi_label
