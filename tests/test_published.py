"""Published per-language tables: finding, reading, averaging the paper's way, and the board's section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xpe_bench.errors import UserInputError
from xpe_bench.paths import resolve_reference_root
from xpe_bench.published import family_mean, find_published, language_mean, read_published

SMALL = """# A paper (2023), Table 7: accuracy (%) per language.
# Its average row is a mean over families.
code,gpt35,gpt4
aaa_Latn,40.0,50.0
bbb_Latn,60.0,70.0
ccc_Latn,20.0,90.0
"""


def _write(folder: Path, text: str = SMALL, name: str = "table.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_table_is_read_with_its_notes_as_fractions(tmp_path):
    table = read_published(_write(tmp_path))
    assert table.notes == (
        "A paper (2023), Table 7: accuracy (%) per language.",
        "Its average row is a mean over families.",
    )
    assert table.columns == ("gpt35", "gpt4")
    assert table.values["gpt4"] == {"aaa_Latn": 0.5, "bbb_Latn": 0.7, "ccc_Latn": 0.9}
    assert language_mean(table.values["gpt35"], ["aaa_Latn", "bbb_Latn"]) == pytest.approx(0.5)


def test_columns_match_replay_sources_without_case_and_punctuation(tmp_path):
    table = read_published(_write(tmp_path))
    assert table.column_for({"source": "gpt-4", "predictions_dir": ""}) == "gpt4"
    assert table.column_for({"source": "GPT-3.5", "predictions_dir": "", "scoring": "first"}) == "gpt35"
    assert table.column_for({"source": "gpt-4", "predictions_dir": "/elsewhere"}) is None  # other outputs
    assert table.column_for({"source": "gpt-5"}) is None and table.column_for({}) is None


def test_family_mean_weighs_every_family_the_same(tmp_path):
    values = read_published(_write(tmp_path)).values["gpt35"]
    families = {"aaa_Latn": "A", "bbb_Latn": "A", "ccc_Latn": "B"}
    # family A: (0.4 + 0.6) / 2 = 0.5, family B: 0.2 -> 0.35; over languages it would be 0.4
    assert family_mean(values, families) == (pytest.approx(0.35), 2)
    assert language_mean(values, values) == pytest.approx(0.4)
    with pytest.raises(UserInputError, match="no family"):
        family_mean(values, {"aaa_Latn": "A"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lang,gpt4\naaa_Latn,1\n", "expected code"),
        ("code,gpt4\naaa_Latn,high\n", "not a number"),
        ("code,gpt4\naaa_Latn,120\n", "not a percentage"),
        ("code,gpt4\naaa_Latn,1\naaa_Latn,2\n", "appears twice"),
        ("code,gpt4\naaa_Latn,1,2\n", "3 fields, the header has 2"),
        ("# only notes\ncode,gpt4\n", "no rows"),
    ],
)
def test_malformed_tables_are_one_line_errors(tmp_path, text, problem):
    with pytest.raises(UserInputError, match=problem):
        read_published(_write(tmp_path, text))


def test_the_reference_folder_is_found_beside_the_data_root_or_set(tmp_path, monkeypatch):
    monkeypatch.delenv("XPE_BENCH_REFERENCE", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    _write(tmp_path / "shared" / "reference")
    assert resolve_reference_root(tmp_path / "shared" / "data") == tmp_path / "shared" / "reference"
    monkeypatch.setenv("XPE_BENCH_DATA", str(tmp_path / "shared" / "data"))
    assert find_published("table.csv") == tmp_path / "shared" / "reference" / "table.csv"
    with pytest.raises(UserInputError, match=r"no 'other.csv' in .*CSV files there: table\.csv"):
        find_published("other.csv")
    elsewhere = _write(tmp_path / "mine", name="x.csv")
    monkeypatch.setenv("XPE_BENCH_REFERENCE", str(elsewhere.parent))
    assert find_published("x.csv") == elsewhere
    assert find_published(str(elsewhere)) == elsewhere  # a path is taken as it is
    monkeypatch.setenv("XPE_BENCH_REFERENCE", str(tmp_path / "missing"))
    with pytest.raises(UserInputError, match="XPE_BENCH_REFERENCE"):
        find_published("x.csv")


@pytest.mark.data
def test_the_sib200_table_averages_as_its_notes_say(registry):
    """The shared SIB-200 table: 204 languages; over languages 45.13 / 52.58, over the 21 families of the
    task's language table 43.3 / 48.7 (the paper's Table 4 average), as the file's notes state."""
    table = read_published(find_published("sib200-paper-gpt-accuracy.csv", resolve_reference_root()))
    languages = registry.tasks["sib200"].languages
    families = {code: languages[code].family for code in languages.languages}
    assert len(table.values["gpt4"]) == 204 and "nqo_Nkoo" not in table.values["gpt4"]
    for column, over_languages, over_families in (("gpt35", 45.13, 43.3), ("gpt4", 52.58, 48.7)):
        values = table.values[column]
        assert 100 * np.mean(list(values.values())) == pytest.approx(over_languages, abs=0.005)
        mean, count = family_mean(values, families)
        assert count == 21 and 100 * mean == pytest.approx(over_families, abs=0.05)
        assert f"{over_families}" in table.notes[0]
