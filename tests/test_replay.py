"""The ``replay`` method: answer mapping on real GPT outputs, coverage of SIB-200, abstentions, errors."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import datasets
import numpy as np
import pytest

from xpe_bench.budgets import load_budget
from xpe_bench.compact import read_compact
from xpe_bench.errors import UserInputError
from xpe_bench.metrics import abstained, tied_labels
from xpe_bench.runner import Runner, RunRequest
from xpe_bench.store import config_key
from xpe_bench.tasks import TaskData
from xpe_bench_plugins.replay import map_answer, read_replay_file, scored_labels

LABELS = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")
SCI, TRAVEL, POLITICS, SPORTS, HEALTH, ENTERTAINMENT = range(6)
BUDGET = load_budget("smoke")

# Real answers from sib200-llm-predictions (GPT-4 and GPT-3.5), with the label the rules give them.
REAL_ANSWERS = [
    ('This piece of news can be categorized under "Science/Technology".', SCI),
    ('This news article is related to "sports".', SPORTS),
    ("This piece of news is regarding politics.", POLITICS),
    ("This piece of news seems to be related to technology or specifically internet security.", SCI),
    ("travel", TRAVEL),
    # Adjectives and content words in the explanation name no category.
    (
        'This news article is related to "health". It mentions a doctor from Dalhousie University in '
        "Halifax, Nova Scotia, who is also the head of the medical and scientific department at the "
        "Canadian Diabetes Association. The article seems to discuss some sort of medical research.",
        HEALTH,
    ),
    (
        'This piece of news seems to be related to "Travel" as it mentions various geographical locations '
        "and travel activities.",
        TRAVEL,
    ),
    (
        "This piece of text does not appear to be a news article. It seems to be a historical or political "
        "analysis.",
        None,
    ),
    # Two categories: never guessed.
    ('This news article can be categorized under "Travel" and "Geography".', None),
    ("This piece of news seems to be related to travel or geography.", None),
    # The prompt's category list echoed back is not an answer; a verdict beside it is.
    (
        "I'm sorry, but the text you provided is in Bashkir and doesn't seem to be related to any of the "
        "categories you mentioned: science/technology, travel, politics, sports, health or geography. Could "
        "you please provide more context or clarify your request?",
        None,
    ),
    (
        "This piece of news does not seem to fit into the categories of science/technology, travel, "
        "politics, sports, health, or geography. It might be more appropriate under entertainment or arts.",
        ENTERTAINMENT,
    ),
    # Negation is not interpreted: here the negated name restates the verdict.
    (
        'This piece of news seems to be related to "Entertainment" as it discusses a movie and its '
        "nominations for original songs. However, the categories you provided do not include "
        '"Entertainment".',
        ENTERTAINMENT,
    ),
    # Refusals, other categories, an empty answer.
    (
        "I'm sorry, but the text you provided is not in English and I'm unable to categorize it. Could you "
        "please provide an English translation?",
        None,
    ),
    ("This piece of news appears to be related to education.", None),
    ("", None),
    # Non-English answers: English names inside them count, other languages' names do not.
    ("यसले यात्रा (travel) सम्बन्धित छ।", TRAVEL),
    (
        "Tha mi a' smaoineachadh gum faodadh an ailt seo a bhith a' còrdadh ri {{\"science/technology\"}}.",
        SCI,
    ),
    (
        "Tha mi duilich, ach cha robh mi a' tuigsinn an ceist agad gu math. A bheil thu ag iarraidh aithris "
        "a chur ann an roinnean mar {{science/technology, travel, politics, sports, health, no geography}}?",
        None,
    ),
    ('Hierdie is \'n stuk nuus wat verband hou met die kategorie "reis".', None),
    # Assamese, "this news is not about science/technology".
    (
        "\u098f\u0987 \u0996\u09ac\u09f0\u099f\u09cb \u09ac\u09bf\u099c\u09cd\u099e\u09be\u09a8/"
        "\u09aa\u09cd\u09b0\u09af\u09c1\u0995\u09cd\u09a4\u09bf \u09ac\u09bf\u09b7\u09df\u0995 "
        "\u09a8\u09df\u0964",
        None,
    ),
]


@pytest.mark.parametrize(("answer", "expected"), REAL_ANSWERS, ids=[a[:40] for a, _ in REAL_ANSWERS])
def test_map_answer_on_real_answers(answer, expected):
    assert map_answer(answer, LABELS) == expected


def test_map_answer_spelling_variants_and_shared_names():
    for answer in ("Sci/Tech", "sci-tech news", "Science and Technology", "science & technology"):
        assert map_answer(answer, LABELS) == SCI
    assert map_answer("a SPORT event", LABELS) == SPORTS
    shared = ("science/technology", "science/nature")
    assert map_answer("science", shared) is None  # a name of two labels names neither
    assert map_answer("technology", shared) == 0


def test_abstained_marks_all_neg_inf_rows_only():
    scores = np.array([[-np.inf, -np.inf], [0.0, 1.0], [-np.inf, 0.0]], dtype=np.float32)
    assert abstained(scores).tolist() == [True, False, False]


@pytest.fixture(scope="module")
def sib200(registry):
    return registry.tasks["sib200"]


@pytest.fixture(scope="module")
def eval_splits(sib200, data_root) -> dict[str, datasets.Dataset]:
    data = TaskData(sib200, data_root)
    return {lang: data.load(lang, "test") for lang in sib200.languages.groups["all"]}


def _replay(registry, task, method="replay", **options):
    replay = registry.methods[method].create(options)
    replay.setup(None, task)
    return replay


def test_replay_registers_its_presets_through_the_entry_point(registry):
    for name, source in (("replay", "gpt-4"), ("replay-gpt-4", "gpt-4"), ("replay-gpt-3.5", "gpt-3.5")):
        spec = registry.methods[name]
        assert not spec.trains
        assert spec.defaults == {"source": source, "predictions_dir": "", "scoring": "strict"}
    replay = registry.methods["replay"].create({})
    assert replay.fit(None) == {"trained": False}
    assert replay.parameter_report().to_dict()["total"] == 0


def test_gpt4_covers_every_sib200_language_and_test_id(registry, sib200, data_root, eval_splits):
    assert len(eval_splits) == 205
    replay = _replay(registry, sib200)
    folder = data_root / "sib200-llm-predictions" / "gpt-4"
    unmappable = 0
    for lang, test in eval_splits.items():
        assert set(read_replay_file(folder / f"{lang}.tsv")) == set(test["id"]), lang
        scores = replay.predict(test, BUDGET)  # raises on a missing id or a different text
        assert scores.shape == (len(test), len(LABELS)) and scores.dtype == np.float32
        assert replay.unmappable[lang] == int(abstained(scores).sum())
        unmappable += replay.unmappable[lang]
    assert unmappable == 19450  # as documented in docs/methods.md


@pytest.mark.parametrize("source", ["gpt-4", "gpt-3.5"])
def test_english_accuracy_is_plausible(registry, sib200, eval_splits, source):
    test = eval_splits["eng_Latn"]
    scores = _replay(registry, sib200, source=source).predict(test, BUDGET)
    predicted = np.where(abstained(scores), -1, scores.argmax(axis=1))
    accuracy = float(np.mean(predicted == np.array(test["label"])))
    print(f"{source} English accuracy {accuracy:.4f}, {int(abstained(scores).sum())} unmappable")
    assert 0.65 <= accuracy <= 0.85  # SIB-200 reports GPT English zero-shot around 0.7-0.8


def _write_predictions(folder: Path, rows: list[tuple[str, str, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "eng_Latn.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["", "index_id", "category", "text", "my-system"])
        writer.writerows([str(i), *row] for i, row in enumerate(rows))


def _dataset(ids: list[str], texts: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"lang": ["eng_Latn"] * len(ids), "id": ids, "text": texts, "label": [0] * len(ids)}
    )


def test_user_folder_with_quoted_answers(registry, sib200, tmp_path):
    _write_predictions(
        tmp_path,
        [
            ("7", "sports", "A match.", 'Category:\t"Sports"\n(final answer)'),
            ("8", "travel", 'He said "go".', "travel"),
            ("9", "health", "Flu.", "Health\tand\nsports"),
        ],
    )
    replay = _replay(registry, sib200, predictions_dir=str(tmp_path))
    # The raw SIB-200 text of id 8 is its CSV-quoted form, as the SIB-200 authors' reader unquoted it.
    scores = replay.predict(_dataset(["9", "8", "7"], ["Flu.", '"He said ""go""."', "A match."]), BUDGET)
    assert abstained(scores).tolist() == [True, False, False]
    assert scores[1:].argmax(axis=1).tolist() == [TRAVEL, SPORTS]
    assert replay.unmappable == {"eng_Latn": 1}


def test_mismatched_predictions_are_rejected(registry, sib200, tmp_path):
    _write_predictions(tmp_path, [("7", "sports", "A match.", "sports")])
    replay = _replay(registry, sib200, predictions_dir=str(tmp_path))
    with pytest.raises(UserInputError, match="no prediction for index_id '8'"):
        replay.predict(_dataset(["8"], ["A match."]), BUDGET)
    with pytest.raises(UserInputError, match="made for other data"):
        replay.predict(_dataset(["7"], ["Another text."]), BUDGET)


def test_setup_rejects_what_it_cannot_replay(registry, sib200, tmp_path):
    with pytest.raises(UserInputError, match="predictions_dir"):
        _replay(registry, registry.tasks["nusax-senti"])
    with pytest.raises(UserInputError, match=r"option replay\.source"):
        _replay(registry, sib200, source="gpt-5")
    with pytest.raises(UserInputError, match="does not exist"):
        _replay(registry, sib200, predictions_dir=str(tmp_path / "missing"))


@pytest.mark.data
def test_runner_stores_unmappable_answers_as_wrong(registry, tmp_path, sib200):
    request = RunRequest(
        task="sib200",
        method="replay-gpt-4",
        budget=BUDGET,
        seed=0,
        runs_dir=tmp_path,
        backbone="tiny-random",
        sources="eng_Latn",
        targets="eng_Latn",
    )
    (outcome,) = Runner(registry).execute(request)
    rows = outcome.store.read_predictions("eng_Latn")
    answers = read_replay_file(_replay(registry, sib200).folder / "eng_Latn.tsv")
    expected = [map_answer(answers[row["id"]][1], LABELS) for row in rows]
    assert [row["pred"] for row in rows] == [-1 if label is None else label for label in expected]
    assert any(label is None for label in expected)
    correct = sum(label == row["gold"] for label, row in zip(expected, rows, strict=True))
    assert outcome.metrics["eng_Latn"]["accuracy"] == pytest.approx(correct / len(rows))


# scoring rules for answers naming several categories ------------------------------------------------------
GEOGRAPHY = 6
SCORED = [
    # answer, strict, first, fractional
    ('This news is related to "Travel".', (TRAVEL,), (TRAVEL,), (TRAVEL,)),
    ('It can be categorized under "Travel" and "Geography".', (), (TRAVEL,), (TRAVEL, GEOGRAPHY)),
    ("geography or travel", (), (GEOGRAPHY,), (GEOGRAPHY, TRAVEL)),  # in the order they are named
    ("HEALTH, health and again Health, or maybe politics", (), (HEALTH,), (HEALTH, POLITICS)),
    ("This appears to be about education.", (), (), ()),
    ("", (), (), ()),
    # a category word inside another word names nothing
    ("Travelers praised the sportsmanship; a geographically healthy politician.", (), (), ()),
    ("SPORTS", (SPORTS,), (SPORTS,), (SPORTS,)),
    # the echoed category list is dropped under every rule; a verdict beside it counts
    (
        "It fits none of science/technology, travel, politics, sports, health, or geography. Maybe "
        "entertainment.",
        (ENTERTAINMENT,),
        (ENTERTAINMENT,),
        (ENTERTAINMENT,),
    ),
]


@pytest.mark.parametrize(
    ("answer", "strict", "first", "fractional"), SCORED, ids=[a[:30] for a, *_ in SCORED]
)
def test_scoring_rules_on_hand_made_answers(answer, strict, first, fractional):
    for scoring, expected in (("strict", strict), ("first", first), ("fractional", fractional)):
        assert scored_labels(answer, LABELS, scoring) == expected, scoring
    assert map_answer(answer, LABELS) == (strict[0] if strict else None)


def test_each_rule_scores_the_predictions_it_names(registry, sib200, tmp_path):
    _write_predictions(
        tmp_path,
        [
            ("1", "travel", "A trip.", '"Travel" and "Geography"'),
            ("2", "sports", "A match.", "Sports"),
            ("3", "health", "Flu.", "I cannot tell."),
        ],
    )
    data = _dataset(["1", "2", "3"], ["A trip.", "A match.", "Flu."])
    rows = {}
    for scoring in ("strict", "first", "fractional"):
        replay = _replay(registry, sib200, predictions_dir=str(tmp_path), scoring=scoring)
        rows[scoring] = replay.predict(data, BUDGET)
        assert replay.unmappable == {"eng_Latn": 2 if scoring == "strict" else 1}
    assert abstained(rows["strict"]).tolist() == [True, False, True]
    assert rows["first"][0].argmax() == TRAVEL and abstained(rows["first"]).tolist() == [False, False, True]
    fractional = rows["fractional"][0]
    assert fractional[TRAVEL] == fractional[GEOGRAPHY] == fractional.max()
    assert tied_labels(rows["fractional"]) == {0: (TRAVEL, GEOGRAPHY)}
    with pytest.raises(UserInputError, match=r"option replay\.scoring: 'any'; valid: one of strict, first"):
        _replay(registry, sib200, predictions_dir=str(tmp_path), scoring="any")


def test_default_scoring_keeps_the_identity_of_stored_replay_runs(registry):
    """Runs stored before ``scoring`` existed were scored strictly: a default run must get their keys."""
    committed = Path(__file__).resolve().parents[1] / "leaderboards" / "results" / "sib200-me5-small-joshi5"
    for method, key in (("replay-gpt-4", "b84abdc2fd42"), ("replay-gpt-3.5", "79b81be01442")):
        spec = registry.methods[method]
        (path,) = committed.glob(f"sib200-{method}-*-{key}.json.gz")
        manifest = read_compact(path)["manifest"]
        default = spec.identity_options(spec.resolve_options({}))
        assert "scoring" not in default and manifest["identity"]["method"]["options"] == default
        assert config_key(manifest["identity"]) == manifest["key"] and manifest["key"].startswith(key)
        assert manifest["method"]["options"]["scoring"] == "strict"  # the manifest names the rule
        first = spec.identity_options(spec.resolve_options({"scoring": "first"}))
        assert first == {**default, "scoring": "first"}  # other rules are new identities


@pytest.mark.data
def test_a_run_stored_before_scoring_existed_is_reused_and_named(registry, tmp_path):
    request = RunRequest(
        task="sib200",
        method="replay-gpt-4",
        budget=BUDGET,
        seed=0,
        runs_dir=tmp_path,
        backbone="tiny-random",
        sources="eng_Latn",
        targets="eng_Latn",
    )
    (outcome,) = Runner(registry).execute(request)
    record = outcome.store.read_record()
    assert record is not None and record.method.options["scoring"] == "strict"
    assert "scoring" not in record.identity_options
    # Make it a record of a run stored before the option was added.
    older = {name: value for name, value in record.method.options.items() if name != "scoring"}
    outcome.store.write_record(
        dataclasses.replace(record, method=dataclasses.replace(record.method, options=older))
    )
    explicit = dataclasses.replace(request, options={"scoring": "strict"})
    (again,) = Runner(registry).execute(explicit)
    assert again.store.path == outcome.store.path and again.reused_languages == ["eng_Latn"]
    stored = again.store.read_record()
    assert stored is not None and stored.method.options["scoring"] == "strict"
    (first,) = Runner(registry).execute(dataclasses.replace(request, options={"scoring": "first"}))
    assert first.store.path != outcome.store.path
    assert first.metrics["eng_Latn"]["accuracy"] >= outcome.metrics["eng_Latn"]["accuracy"]
