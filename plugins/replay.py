"""``replay``: predictions made elsewhere, imported to sit in the same tables and tests as trained methods.

Out of the box it replays the SIB-200 authors' zero-shot GPT-3.5 and GPT-4 outputs
(``<data root>/sib200-llm-predictions/{gpt-3.5,gpt-4}/<lang>.tsv``); ``predictions_dir`` points it at any
folder with the same layout, so any external system can be replayed on any task. A file is a TSV with
standard CSV quoting (answers are quoted and may hold tabs and newlines): an unnamed row-index column, then
``index_id``, ``category``, ``text`` and, last, the system's free-text answer. Rows are matched to the test
split by ``index_id``, and the texts must agree: exactly, or after the CSV unquoting that the SIB-200 authors'
reader applied to the raw SIB-200 text (930 of their 41,820 texts differ from the raw files only that way).

How an answer maps to labels (:func:`scored_labels`; :func:`map_answer` is the ``strict`` rule):

1. The answer is NFKC-normalised and case-folded.
2. A category is named by its label, a ``/``-part of its label (``science/technology`` -> ``science``,
   ``technology``) or a spelling variant (``sci/tech``, ``sci-tech``, ``scitech``; ``sport``), as a whole
   word: casing, quotes and markup around it do not matter (``"Science/Technology"``, ``{{"travel"}}``).
   Nothing else names a category: not adjectives (political, geographical, scientific), derived nouns
   (travelers, healthcare) or synonyms (tourism, medicine). The answers use those to describe the content
   ("as it mentions various geographical locations"), not to give a verdict. A name shared by two labels
   names neither.
3. An enumeration is not an answer: a run of names separated only by punctuation and at most one short word
   (``and``, ``or``, or another language's "or" such as Gaelic ``no``) that names three or more categories is
   dropped. It is the prompt's category list echoed back ("does not fit into the categories of
   science/technology, travel, politics, sports, health, or geography. It might be more appropriate under
   entertainment").
4. What the categories left give, by the option ``scoring`` (:data:`SCORING`; part of the run identity):

   - ``strict`` (the default, and the only rule before the option existed): exactly one category left is
     its label; two or more ("Travel" and "Geography", "travel or geography") are unmappable, never guessed;
   - ``first``: the category named first (outside enumerations) is the label;
   - ``fractional``: k categories left share the answer: the scores row holds an equal top score for each,
     a tie that the metrics credit 1/k when the gold label is among them (:mod:`xpe_bench.metrics`).

   Under every rule an answer naming no category (refusals, "related to education", empty answers) is
   unmappable: :meth:`Replay.predict` gives it an all ``-inf`` row, which the results store records as an
   abstention (``pred = -1``): always wrong.

Two things are deliberately left uninterpreted. Negation: in these outputs a negated name mostly restates the
verdict ('related to "Entertainment" ... however, the categories you provided do not include
"Entertainment"'), and a negation-scope rule tried on them dropped real verdicts ("the text is not in English
and may be related to travel"). Category names in other languages: GPT-4 answers in English; GPT-3.5 answers
about 780 inputs in another language, and in about 30 of them names a category affirmatively in that language
(Afrikaans 'die kategorie "reis"'), against similar numbers of negations (Assamese "... বিষয়ক নয়", "is not
about ..."), translated category lists and paraphrases of the input. A lexicon with per-language morphology
and negation for some 30 languages would move under 0.1% of the answers, at the risk of mapping negations.
English names inside such answers (``यात्रा (travel)``) count. ``docs/methods.md`` has the measured counts.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpe_bench.errors import UserInputError
from xpe_bench.hookspecs import hookimpl
from xpe_bench.methods import Choice, Method, MethodSpec, ParameterReport
from xpe_bench.paths import resolve_data_root

if TYPE_CHECKING:
    import datasets

    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget
    from xpe_bench.tasks import TaskSpec

SOURCES = ("gpt-4", "gpt-3.5")
"""The bundled systems: folders of ``<data root>/sib200-llm-predictions/``."""
BUNDLED_FOLDER = "sib200-llm-predictions"
BUNDLED_TASK = "sib200"

VARIANTS: Mapping[str, tuple[str, ...]] = {
    "science/technology": ("sci/tech", "sci-tech", "scitech"),
    "sports": ("sport",),
}
"""Spelling variants of label names (case-folded), beyond the label and its ``/``-parts."""
SCORING = ("strict", "first", "fractional")
"""Rules for an answer naming several categories (module docstring, rule 4)."""
ENUMERATION = 3
"""A run of names with this many different categories is a list, not an answer."""
_LIST_GAP = re.compile(r"[^\w.!?;:\n]*(?:\w{1,5}[^\w.!?;:\n]*)?")
"""What may part two names in an enumeration: punctuation, spaces, at most one short word; no sentence end."""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@lru_cache(maxsize=16)
def _lexicon(labels: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, int]]:
    """A whole-word pattern over every name of every label, and the label id each name stands for."""
    owners: dict[str, set[int]] = defaultdict(set)
    for label_id, label in enumerate(labels):
        folded = _fold(label).strip()
        for name in {folded, *folded.split("/"), *VARIANTS.get(folded, ())}:
            if name.strip():
                owners[name.strip()].add(label_id)
    names = {name: ids.pop() for name, ids in owners.items() if len(ids) == 1}
    # Longest first, so "science/technology" wins over "science" and "sports" over "sport".
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"), names


def map_answer(answer: str, labels: Sequence[str]) -> int | None:
    """The label id a free-text answer names under the ``strict`` rule, or ``None`` when it names none or
    several (module docstring)."""
    scored = scored_labels(answer, labels, "strict")
    return scored[0] if scored else None


def scored_labels(answer: str, labels: Sequence[str], scoring: str) -> tuple[int, ...]:
    """The label ids a free-text answer is scored as under ``scoring`` (module docstring, rule 4): one id,
    several (``fractional``: they share the answer) or none (unmappable)."""
    named = named_labels(answer, labels)
    if scoring == "strict":
        return named if len(named) == 1 else ()
    if scoring == "first":
        return named[:1]
    if scoring == "fractional":
        return named
    raise UserInputError(f"option scoring: {scoring!r}; valid: {', '.join(SCORING)}")


def named_labels(answer: str, labels: Sequence[str]) -> tuple[int, ...]:
    """Every label id the answer names outside enumerations (rules 1-3 of the module docstring), in the
    order of their first mention."""
    text = _fold(answer)
    pattern, names = _lexicon(tuple(labels))
    mentions = [(match.start(), match.end(), names[match.group()]) for match in pattern.finditer(text)]
    named: list[int] = []
    run: list[int] = []
    for index, (start, _, label_id) in enumerate(mentions):
        if run and not _LIST_GAP.fullmatch(text, mentions[index - 1][1], start):
            named += _outside_enumeration(run)
            run = []
        run.append(label_id)
    named += _outside_enumeration(run)
    return tuple(dict.fromkeys(named))


def _outside_enumeration(run: list[int]) -> list[int]:
    return run if len(set(run)) < ENUMERATION else []


def _csv_unquoted(text: str) -> str:
    """``text`` as a reader with standard CSV quoting returns it (how the SIB-200 authors read the data)."""
    return "\n".join("\t".join(row) for row in csv.reader(io.StringIO(text), delimiter="\t"))


def read_replay_file(path: Path) -> dict[str, tuple[str, str]]:
    """``index_id`` -> (text, answer) of one replay file; the answer is the last column."""
    if not path.is_file():
        raise UserInputError(f"{path}: no such predictions file (expected one <lang>.tsv per language)")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, [])
        if "index_id" not in header or "text" not in header or header[-1] in ("index_id", "category", "text"):
            raise UserInputError(
                f"{path}: header {header}: expected a row-index column, index_id, category, text and, last, "
                "the answer column"
            )
        id_at, text_at = header.index("index_id"), header.index("text")
        rows: dict[str, tuple[str, str]] = {}
        for row in reader:
            if len(row) != len(header):
                raise UserInputError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            if row[id_at] in rows:
                raise UserInputError(f"{path}, line {reader.line_num}: duplicate index_id {row[id_at]!r}")
            rows[row[id_at]] = (row[text_at], row[-1])
    return rows


class Replay(Method):
    """Replays one folder of predictions; the backbone is ignored."""

    def setup(self, backbone: Backbone, task: TaskSpec) -> None:
        self.labels = task.labels
        self.scoring = self.options["scoring"]
        self.unmappable: dict[str, int] = {}  # language -> unmappable answers among those last predicted
        self._files: dict[str, dict[str, tuple[str, str]]] = {}  # language -> read_replay_file()
        given = self.options["predictions_dir"]
        if given:
            self.folder = Path(given).expanduser()
        else:
            source = self.options["source"]
            if task.name != BUNDLED_TASK:
                raise UserInputError(
                    f"method replay: the bundled {source} predictions are for task {BUNDLED_TASK}, not "
                    f"{task.name}; set the option predictions_dir to a folder of <lang>.tsv files for it"
                )
            root = resolve_data_root()
            if root is None:
                raise UserInputError(
                    "method replay: no local data root to find the bundled predictions in; set "
                    "$XPE_BENCH_DATA or the option predictions_dir"
                )
            self.folder = root / BUNDLED_FOLDER / source
        if not self.folder.is_dir():
            raise UserInputError(f"method replay: predictions folder {str(self.folder)!r} does not exist")

    def predict(self, data: datasets.Dataset, budget: Budget) -> np.ndarray:
        scores = np.zeros((len(data), len(self.labels)), dtype=np.float32)
        unmappable: dict[str, int] = defaultdict(int)
        columns = data.to_dict()  # one Arrow conversion; iterating a column converts row by row
        examples = zip(columns["lang"], columns["id"], columns["text"], strict=True)
        for row, (lang, example_id, text) in enumerate(examples):
            if lang not in self._files:
                self._files[lang] = read_replay_file(self._path(lang))
            found = self._files[lang].get(example_id)
            if found is None:
                raise UserInputError(
                    f"{self._path(lang)}: no prediction for index_id {example_id!r} of {lang}"
                )
            replayed_text, answer = found
            if replayed_text != text and replayed_text != _csv_unquoted(text):
                raise UserInputError(
                    f"{self._path(lang)}: index_id {example_id!r} has text {replayed_text[:60]!r}..., the "
                    f"test split {text[:60]!r}...: these predictions were made for other data"
                )
            label_ids = scored_labels(answer, self.labels, self.scoring)
            if label_ids:
                scores[row, list(label_ids)] = 1.0
            else:
                scores[row] = -np.inf
                unmappable[lang] += 1
        for lang in dict.fromkeys(columns["lang"]):
            self.unmappable[lang] = unmappable[lang]
        return scores

    def _path(self, lang: str) -> Path:
        return self.folder / f"{lang}.tsv"

    def parameter_report(self) -> ParameterReport:
        return ParameterReport(total=0, trainable=0, modules={})


def _create(options: Mapping[str, Any]) -> Replay:
    return Replay(options)


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    presets = [
        ("replay", "gpt-4", "predictions made elsewhere (source=gpt-4|gpt-3.5, or any predictions_dir)"),
        ("replay-gpt-4", "gpt-4", "the SIB-200 authors' zero-shot GPT-4 outputs"),
        ("replay-gpt-3.5", "gpt-3.5", "the SIB-200 authors' zero-shot GPT-3.5 outputs"),
    ]
    return [
        MethodSpec(
            name,
            f"{what}; free-text answers mapped to labels (scoring=strict|first|fractional for answers naming "
            "several), unmappable ones abstain (always wrong)",
            _create,
            {"source": source, "predictions_dir": "", "scoring": "strict"},
            trains=False,
            rules={"source": Choice(SOURCES), "scoring": Choice(SCORING)},
            added_later={"scoring": "strict"},
            help={
                "source": "whose stored outputs to replay (the SIB-200 authors' GPT-4 or GPT-3.5 answers)",
                "predictions_dir": "a folder of <lang>.tsv answers to replay in place of source's",
                "scoring": "answers naming several labels: strict = wrong, first = the first label named, "
                "fractional = 1/k credit for k labels named",
            },
        )
        for name, source, what in presets
    ]
