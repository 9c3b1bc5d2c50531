"""NusaX-Senti and AfriSenti: task files, language metadata and loading from the shared data mirror.

Every split of every language is loaded through :class:`TaskData` and compared record by record with an
independent ``csv`` parse of the same file, so a wrong delimiter, quoting mode, header or folder mapping fails
here. The files' quoting was checked before the task files were written (docs/tasks.md): NusaX and the
AfriSenti test files are standard CSV (a CSV writer reproduces them byte for byte), AfriSenti train/dev files
are not.
"""

from __future__ import annotations

import csv
import io
import tomllib
from pathlib import Path

import pytest

from xpe_bench.errors import UserInputError
from xpe_bench.plugins import load_registry
from xpe_bench.runner import Runner
from xpe_bench.tasks import TaskData, TaskSpec, builtin_task_specs

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"
SPLITS = ("train", "dev", "test")
SENTIMENT = ["negative", "neutral", "positive"]

NUSAX_DIRS = {
    "ace": "acehnese",
    "ban": "balinese",
    "bjn": "banjarese",
    "bug": "buginese",
    "eng": "english",
    "ind": "indonesian",
    "jav": "javanese",
    "mad": "madurese",
    "min": "minangkabau",
    "nij": "ngaju",
    "sun": "sundanese",
    "bbc": "toba_batak",
}
NUSAX_FILES = {"train": "train", "dev": "valid", "test": "test"}
NUSAX_SIZES = {"train": 500, "dev": 100, "test": 400}

# Records per file (train, dev, test), counted when the task was added.
AFRISENTI_SIZES = {
    "amh": (5984, 1497, 1999),
    "arq": (1651, 414, 958),
    "ary": (5583, 494, 2961),
    "hau": (14172, 2677, 5303),
    "ibo": (10192, 1841, 3682),
    "kin": (3302, 827, 1026),
    "orm": (0, 396, 2096),
    "pcm": (5121, 1281, 4154),
    "por": (3063, 767, 3662),
    "swa": (1810, 453, 748),
    "tir": (0, 398, 2000),
    "tso": (804, 203, 254),
    "twi": (3481, 388, 949),
    "yor": (8522, 2090, 4515),
}

# NusaX/AfriSenti code -> the same language in the SIB-200 metadata table (the source of the Joshi classes).
SIB200_EQUIVALENTS = {
    "nusax-senti": {
        "ace": "ace_Latn",
        "ban": "ban_Latn",
        "bjn": "bjn_Latn",
        "bug": "bug_Latn",
        "eng": "eng_Latn",
        "ind": "ind_Latn",
        "jav": "jav_Latn",
        "min": "min_Latn",
        "sun": "sun_Latn",
    },
    "afrisenti": {
        "amh": "amh_Ethi",
        "ary": "ary_Arab",
        "hau": "hau_Latn",
        "ibo": "ibo_Latn",
        "kin": "kin_Latn",
        "orm": "gaz_Latn",
        "por": "por_Latn",
        "swa": "swh_Latn",
        "tir": "tir_Ethi",
        "tso": "tso_Latn",
        "twi": "twi_Latn",
        "yor": "yor_Latn",
    },
}


@pytest.fixture(scope="module")
def specs() -> dict[str, TaskSpec]:
    return {spec.name: spec for spec in builtin_task_specs()}


@pytest.fixture(scope="module")
def nusax(specs, data_root) -> TaskData:
    return TaskData(specs["nusax-senti"], data_root)


@pytest.fixture(scope="module")
def afrisenti(specs, data_root) -> TaskData:
    return TaskData(specs["afrisenti"], data_root)


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(load_registry())


def _read(path: Path, delimiter: str, *, quoted: bool = True) -> tuple[str, list[list[str]]]:
    """The raw file text and its records (header included), with standard CSV quoting or none."""
    raw = path.read_text(encoding="utf-8")
    quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    return raw, list(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter, quoting=quoting))


def _encode(rows: list[list[str]], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _columns(data: TaskData, lang: str, split: str) -> dict[str, list]:
    """A loaded split as plain lists (one Arrow conversion), plus ``label_name`` for each row."""
    dataset = data.load(lang, split)
    columns = dataset.to_dict()
    names = dataset.features["label"].names
    columns["label_name"] = [names[i] for i in columns["label"]]
    return columns


def test_both_tasks_are_registered(runner):
    for name, size in (("nusax-senti", 12), ("afrisenti", 14)):
        task = runner.registry.task(name)
        assert len(task.languages) == size
        assert list(task.labels) == SENTIMENT
        assert task.describe()["definition_sha256"]
    assert runner.registry.task("nusax-senti").hub.id == "indonlp/NusaX-senti"
    assert runner.registry.task("afrisenti").hub.id == "shmuhammad/AfriSenti-twitter-sentiment"


@pytest.mark.parametrize("lang", list(NUSAX_DIRS))
def test_nusax_every_split_matches_its_file(nusax, data_root, lang):
    for split in SPLITS:
        rel = f"nusax-senti/{NUSAX_DIRS[lang]}/{NUSAX_FILES[split]}.csv"
        _, records = _read(data_root / rel, ",")
        header, rows = records[0], records[1:]
        assert header == ["id", "text", "label"]
        loaded = _columns(nusax, lang, split)
        assert len(loaded["id"]) == len(rows) == NUSAX_SIZES[split]
        assert loaded["id"] == [row[0] for row in rows]
        assert loaded["text"] == [row[1] for row in rows]
        assert loaded["label_name"] == [row[2] for row in rows]
        assert set(loaded["label_name"]) == set(SENTIMENT)
        assert set(loaded["lang"]) == {lang}
        assert rel in nusax.fingerprints


@pytest.mark.parametrize("lang", list(AFRISENTI_SIZES))
def test_afrisenti_every_split_matches_its_file(afrisenti, data_root, lang):
    for split, expected in zip(SPLITS, AFRISENTI_SIZES[lang], strict=True):
        path = data_root / f"afrisenti/{lang}/{split}.tsv"
        raw, records = _read(path, "\t", quoted=split == "test")
        header, rows = records[0], records[1:]
        assert header[-2:] == ["tweet", "label"]
        # One record per physical line: no tweet spans lines, so ids (line numbers) are 2..n+1.
        assert len(raw.rstrip("\n").split("\n")) - 1 == len(rows) == expected
        loaded = _columns(afrisenti, lang, split)
        assert len(loaded["id"]) == expected
        assert loaded["id"] == [str(line) for line in range(2, expected + 2)]
        assert loaded["text"] == [row[header.index("tweet")] for row in rows]
        assert loaded["label_name"] == [row[header.index("label")] for row in rows]
        if expected:
            assert set(loaded["label_name"]) == set(SENTIMENT)


def test_afrisenti_headers(data_root):
    """Only Oromo dev/test carry an ID column; the task therefore uses line numbers as ids everywhere."""
    headers = {
        (lang, split): (data_root / f"afrisenti/{lang}/{split}.tsv")
        .read_text(encoding="utf-8")
        .split("\n")[0]
        for lang in AFRISENTI_SIZES
        for split in SPLITS
    }
    with_id = sorted(key for key, header in headers.items() if header != "tweet\tlabel")
    assert with_id == [("orm", "dev"), ("orm", "test")]
    assert headers["orm", "test"] == "ID\ttweet\tlabel"


def test_test_only_languages_have_no_training_rows(afrisenti, data_root):
    assert afrisenti.task.test_only == ("orm", "tir")
    for lang in ("orm", "tir"):
        assert (data_root / f"afrisenti/{lang}/train.tsv").read_text(
            encoding="utf-8"
        ).strip() == "tweet\tlabel"
        sizes = tuple(len(afrisenti.load(lang, split)) for split in SPLITS)
        assert sizes == AFRISENTI_SIZES[lang]
        assert sizes[0] == 0 and min(sizes[1:]) > 0


def test_header_only_train_file_fails_unless_test_only(afrisenti, tmp_path):
    """What makes orm/tir load as empty is their test_only declaration, not the header-only file itself."""
    for lang in ("orm", "hau"):
        folder = tmp_path / "afrisenti" / lang
        folder.mkdir(parents=True)
        (folder / "train.tsv").write_text("tweet\tlabel", encoding="utf-8")
    data = TaskData(afrisenti.task, tmp_path)
    assert len(data.load("orm", "train")) == 0
    with pytest.raises(
        UserInputError, match=r"hau/train\.tsv: empty split: the split has a header but no rows"
    ):
        data.load("hau", "train")


def test_test_only_language_is_refused_as_source(runner):
    task = runner.registry.task("afrisenti")
    with pytest.raises(UserInputError, match=r"--sources: \['orm'\] have no training data in afrisenti"):
        runner.resolve_languages(task, "orm", None)
    with pytest.raises(UserInputError, match=r"\['orm', 'tir'\] have no training data"):
        runner.resolve_languages(task, "hau,test-only", None)
    sources, targets = runner.resolve_languages(task, "hau", "orm,tir")
    assert (sources, targets) == (["hau"], ["orm", "tir"])


def test_default_sources_and_targets(runner):
    nusax_task = runner.registry.task("nusax-senti")
    assert runner.resolve_languages(nusax_task, None, None) == (["eng", "ind"], list(NUSAX_DIRS))
    afrisenti_task = runner.registry.task("afrisenti")
    sources, targets = runner.resolve_languages(afrisenti_task, None, None)
    assert sources == ["amh", "hau", "por", "swa"]
    assert targets == list(AFRISENTI_SIZES)
    assert not set(sources) & set(afrisenti_task.test_only)


@pytest.mark.parametrize("name", ["nusax-senti", "afrisenti"])
def test_declared_group_sizes_hold(specs, name):
    raw = tomllib.loads((TASKS_DIR / f"{name}.toml").read_text(encoding="utf-8"))
    table = specs[name].languages
    assert raw["groups"], "the task declares named groups"
    for group, spec in raw["groups"].items():
        assert len(table.groups[group]) == spec["size"], group
    assert sum(len(table.groups[f"joshi-{k}"]) for k in range(6)) + len(table.groups["unclassified"]) == len(
        table
    )


def test_nusax_groups(specs):
    groups = specs["nusax-senti"].languages.groups
    assert groups["high"] == ("eng", "ind")
    assert set(groups["seen"]) == {"eng", "ind", "jav", "sun"}
    assert set(groups["unseen"]) == {"ace", "ban", "bjn", "bug", "mad", "min", "nij", "bbc"}
    assert set(groups["local"]) == set(groups["unseen"]) | set(groups["local-seen"])
    assert set(groups["unclassified"]) == {"mad", "nij", "bbc"}


def test_afrisenti_groups(specs):
    groups = specs["afrisenti"].languages.groups
    assert set(groups["seen"]) == {"amh", "hau", "orm", "por", "swa"}
    assert set(groups["seen-with-train"]) == {"amh", "hau", "por", "swa"}
    assert set(groups["unseen-with-train"]) == {"arq", "ary", "ibo", "kin", "pcm", "tso", "twi", "yor"}
    assert set(groups["with-train"]) == set(AFRISENTI_SIZES) - {"orm", "tir"}
    assert groups["test-only"] == ("orm", "tir")
    assert set(groups["unclassified"]) == {"arq", "ary", "pcm"}


@pytest.mark.parametrize("name", ["nusax-senti", "afrisenti"])
def test_metadata_agrees_with_the_sib200_table(specs, name):
    """Joshi class, CC100 flag and family are taken from the SIB-200 row of the same language."""
    sib200 = specs["sib200"].languages
    table = specs[name].languages
    for code, sib_code in SIB200_EQUIVALENTS[name].items():
        assert table[code].joshi == sib200[sib_code].joshi, code
        assert table[code].cc100 == sib200[sib_code].cc100, code
        assert table[code].family == sib200[sib_code].family, code
        assert table[code].script == sib_code.split("_")[1], code


def test_nusax_is_parallel(nusax):
    """Every language has the same ids with the same labels in each split (translations of one corpus)."""
    for split in SPLITS:
        reference = _columns(nusax, "ind", split)
        for lang in NUSAX_DIRS:
            loaded = _columns(nusax, lang, split)
            assert loaded["id"] == reference["id"], (lang, split)
            assert loaded["label"] == reference["label"], (lang, split)


def test_nusax_quoted_texts_round_trip(nusax, data_root):
    """Re-encoding the loaded rows with a standard CSV writer gives back every file byte for byte."""
    for lang, folder in NUSAX_DIRS.items():
        for split in SPLITS:
            raw = (data_root / f"nusax-senti/{folder}/{NUSAX_FILES[split]}.csv").read_text(encoding="utf-8")
            loaded = _columns(nusax, lang, split)
            rows = zip(loaded["id"], loaded["text"], loaded["label_name"], strict=True)
            assert _encode([["id", "text", "label"], *map(list, rows)], ",") == raw, (lang, split)
    english = _columns(nusax, "eng", "train")
    text = english["text"][english["id"].index("64")]
    assert 'went "yeah, sure," then becomes' in text
    toba = _columns(nusax, "bbc", "train")["text"]
    assert sum("\n" in text for text in toba) == 19


def test_afrisenti_test_files_round_trip(afrisenti, data_root):
    """Test files are CSV-quoted: tweets with quotes are unescaped on loading and re-encode exactly."""
    quoted = 0
    for lang in AFRISENTI_SIZES:
        if lang == "orm":  # its ID column is not loaded, so the file cannot be rebuilt from the dataset
            continue
        raw = (data_root / f"afrisenti/{lang}/test.tsv").read_text(encoding="utf-8")
        loaded = _columns(afrisenti, lang, "test")
        rows = [list(row) for row in zip(loaded["text"], loaded["label_name"], strict=True)]
        assert _encode([["tweet", "label"], *rows], "\t") == raw, lang
        quoted += sum('"' in text for text in loaded["text"])
    assert quoted == 158
    portuguese = _columns(afrisenti, "por", "test")["text"]
    assert 'Bem vindo á Maputo-Moçambique Onde ""ponto final"" não é a ultima paragem🙂' in portuguese


def test_afrisenti_train_dev_files_are_read_verbatim(afrisenti, data_root):
    """Train/dev files were written without CSV quoting and are read without it (per-split quoting)."""
    with_quotes = 0
    for lang in AFRISENTI_SIZES:
        for split in ("train", "dev"):
            lines = (data_root / f"afrisenti/{lang}/{split}.tsv").read_text(encoding="utf-8").split("\n")[1:]
            fields = [line.split("\t")[-2] for line in lines if line]
            texts = _columns(afrisenti, lang, split)["text"]
            assert texts == fields
            with_quotes += sum('"' in field for field in fields)
    assert with_quotes == 1876
