from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from xpe_bench.errors import UserInputError
from xpe_bench.tasks import builtin_task_specs

# The reference facts sit beside the data mirror (shared/data, shared/reference), wherever the tests find it.
_DATA = os.environ.get("XPE_BENCH_DATA")
_SHARED = Path(_DATA).resolve().parent if _DATA else Path(__file__).resolve().parents[2] / "shared"
REFERENCE = _SHARED / "reference"


@pytest.fixture(scope="module")
def sib200():
    return {spec.name: spec for spec in builtin_task_specs()}["sib200"].languages


def test_all_205_varieties_with_unclassified_kept(sib200):
    assert len(sib200) == 205
    unclassified = sib200.groups["unclassified"]
    assert len(unclassified) == 27
    assert "nqo_Nkoo" in unclassified and sib200["nqo_Nkoo"].joshi is None
    sizes = [len(sib200.groups[f"joshi-{k}"]) for k in range(6)]
    assert sizes == [21, 89, 16, 27, 18, 7]
    assert sum(sizes) + len(unclassified) == 205


@pytest.mark.parametrize(
    ("group", "size"),
    [
        ("enarzho", 3),
        ("joshi5", 7),
        ("seen-92", 92),
        ("unseen", 113),
        ("low-performing", 46),
        ("seen-wo-joshi5", 85),
        ("all-wo-joshi5", 198),
        ("all", 205),
    ],
)
def test_paper_groups_have_their_sizes(sib200, group, size):
    assert len(sib200.groups[group]) == size


def test_errata_fixed(sib200):
    seen = set(sib200.groups["seen-92"])
    assert "tgl_Latn" in seen
    assert "azb_Arab" not in seen


def test_low_performing_matches_reference_and_all_unseen(sib200):
    reference = set((REFERENCE / "sib200-low-performing.txt").read_text().split())
    assert set(sib200.groups["low-performing"]) == reference
    assert not reference & set(sib200.groups["seen-92"])


def test_metadata_agrees_with_reference_table_except_errata(sib200):
    with (REFERENCE / "sib200-language-metadata.csv").open(encoding="utf-8") as handle:
        rows = {row["code"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(sib200.languages)
    for code, row in rows.items():
        lang = sib200[code]
        assert lang.joshi == (int(row["class"]) if row["class"] else None)
        assert lang.family == row["family"]
        assert lang.script == code.split("_")[1]
        if code not in {"tgl_Latn", "azb_Arab"}:
            assert lang.cc100 == (row["xlmr"] == "1"), code


def test_joshi5_is_the_papers_source_set(sib200):
    assert sorted(sib200.groups["joshi5"]) == sorted(
        ["arb_Arab", "deu_Latn", "eng_Latn", "fra_Latn", "jpn_Jpan", "spa_Latn", "zho_Hans"]
    )


def test_showcase_spans_every_joshi_class(sib200):
    classes = {sib200[code].joshi_label for code in sib200.groups["showcase"]}
    assert classes == {f"joshi-{k}" for k in range(6)} | {"unclassified"}


def test_resolve_mixes_groups_and_codes_without_duplicates(sib200):
    codes = sib200.resolve("enarzho,eng_Latn,kat_Geor")
    assert codes == ["eng_Latn", "arb_Arab", "zho_Hans", "kat_Geor"]


def test_resolve_unknown_name_lists_groups(sib200):
    with pytest.raises(UserInputError, match=r"neither a language code nor a group.*low-performing"):
        sib200.resolve("eng_Latn,klingon", option="--targets")
