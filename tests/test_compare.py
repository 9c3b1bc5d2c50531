"""``compare`` and ``leaderboard`` on small hand-written run directories (SIB-200 language codes)."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hand_made import hand_made_record
from scipy import stats
from typer.testing import CliRunner

import xpe_bench.cli_compare  # noqa: F401  (registers compare and leaderboard on the app)
from xpe_bench.cli import app
from xpe_bench.compact import export_run
from xpe_bench.comparison import prepare
from xpe_bench.errors import UserInputError
from xpe_bench.run_record import TimingsRecord
from xpe_bench.store import RunStore

runner = CliRunner()

LABELS = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]
SHOWCASE = (
    *("eng_Latn", "zho_Hans", "hin_Deva", "rus_Cyrl", "kat_Geor", "tam_Taml", "swh_Latn"),
    *("yor_Latn", "ibo_Latn", "bod_Tibt", "sin_Sinh", "run_Latn", "nqo_Nkoo", "kir_Cyrl"),
)
"""Two languages of every Joshi class (5 … 0) and two unclassified ones."""
ITEMS = 40


def write_run(
    root: Path,
    name: str,
    *,
    method: str = "spt",
    seed: int = 1,
    accuracy: float = 0.6,
    languages: tuple[str, ...] = SHOWCASE,
    fingerprint: str = "a" * 64,
    task_version: int = 1,
    labels: list[str] = LABELS,
    options: dict[str, Any] | None = None,
    first_item: int = 0,
    draw: str | None = None,
    task: str = "sib200",
) -> Path:
    """A run directory by hand: manifest.json plus predictions/<lang>.jsonl (``draw`` seeds the errors)."""
    run = root / name
    (run / "predictions").mkdir(parents=True)
    record = hand_made_record(
        name,
        task=task,
        task_version=task_version,
        labels=labels,
        method=method,
        options=options,
        parameters={"total": 1000, "trainable": 42},
        fingerprint=fingerprint,
        seed=seed,
        timings=TimingsRecord(train_seconds=12.0 + seed, eval_seconds=3.0),
    )
    RunStore(run).write_record(record)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256((draw or name).encode()).digest()[:8]))
    for lang in languages:
        ids = np.arange(first_item, first_item + ITEMS)
        gold = ids % len(labels)
        pred = np.where(rng.random(ITEMS) < accuracy, gold, (gold + 1) % len(labels))
        lines = [
            json.dumps({"id": str(i), "gold": int(g), "pred": int(p), "scores": []})
            for i, g, p in zip(ids, gold, pred, strict=True)
        ]
        (run / "predictions" / f"{lang}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def _invoke(*args: Any, code: int = 0) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    return result.output


def _text(*args: Any, code: int = 0) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(_invoke(*args, code=code).split())


def _json(*args: Any) -> dict[str, Any]:
    return json.loads(_invoke(*args, "--format", "json"))


# compare ----------------------------------------------------------------------------------------------------
def test_compare_finds_a_clear_winner_on_every_language(tmp_path):
    strong = write_run(tmp_path, "strong", method="xpe", accuracy=0.95)
    weak = write_run(tmp_path, "weak", method="spt", accuracy=0.3)
    report = _json("compare", strong, weak)
    assert [row["language"] for row in report["rows"]][:2] == ["eng_Latn", "zho_Hans"]  # Joshi-5 first
    assert {row["language"] for row in report["rows"]} == set(SHOWCASE)
    assert {row["verdict"] for row in report["rows"]} == {"win"}
    assert all(row["adjusted_p"] >= row["p_value"] for row in report["rows"])
    assert report["overall"]["wins"] == len(SHOWCASE) and report["overall"]["difference"]["low"] > 0.4
    assert report["overall"]["wilcoxon"]["p_value"] < 0.001
    assert report["coverage"]["missing"] == {} and report["warnings"] == []
    reverse = _json("compare", weak, strong, "--test", "bootstrap", "--correction", "bh")
    assert {row["verdict"] for row in reverse["rows"]} == {"loss"}
    assert reverse["rows"][0]["difference"]["value"] == pytest.approx(
        -report["rows"][0]["difference"]["value"]
    )


def test_identical_predictions_are_ties_with_p_one(tmp_path):
    a = write_run(tmp_path, "a", method="xpe", draw="same")
    b = write_run(tmp_path, "b", method="spt", draw="same")
    for test in ("mcnemar", "permutation", "bootstrap"):
        report = _json("compare", a, b, "--test", test)
        assert {row["p_value"] for row in report["rows"]} == {1.0}
        assert {row["verdict"] for row in report["rows"]} == {"tie"}
        assert report["overall"]["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
        assert report["overall"]["wilcoxon"]["p_value"] == 1.0


def test_compare_by_joshi_class_and_group(tmp_path):
    a = write_run(tmp_path, "a", method="xpe", accuracy=0.7)
    b = write_run(tmp_path, "b", method="spt", accuracy=0.5)
    joshi = _json("compare", a, b, "--by", "joshi")
    assert [row["group"] for row in joshi["rows"]] == [
        *(f"joshi-{k}" for k in range(5, -1, -1)),
        "unclassified",
    ]
    assert {row["compared"] for row in joshi["rows"]} == {2}
    groups = _json("compare", a, b, "--by", "group")
    names = [row["group"] for row in groups["rows"]]
    assert names[-1] == "all" and set(names) <= {
        "low-performing",
        "unseen",
        "seen-wo-joshi5",
        "all-wo-joshi5",
        "all",
    }
    assert groups["rows"][-1]["compared"] == len(SHOWCASE) and groups["rows"][-1]["size"] == 205
    markdown = _invoke("compare", a, b, "--by", "joshi", "--format", "md")
    assert markdown.startswith("| Joshi class | langs |") and "| unclassified | 2/27 |" in markdown
    assert "Wilcoxon signed-rank" in markdown and "minimum detectable effect" in markdown
    table = _text("compare", a, b)
    assert "A = xpe vs B = spt" in table and "14 languages compared" in table


def test_incompatible_budgets_are_refused_without_force(tmp_path):
    a = write_run(tmp_path, "a", method="xpe")
    b = write_run(tmp_path, "b", method="spt", fingerprint="c" * 64)
    message = _text("compare", a, b, code=2)
    assert "budgets differ" in message and "--force" in message
    _invoke("leaderboard", a, b, "--out", tmp_path / "board.md", code=2)
    assert not (tmp_path / "board.md").exists()
    forced = _json("compare", a, b, "--force")
    assert any("budgets differ" in warning for warning in forced["warnings"])
    _invoke("leaderboard", a, b, "--out", tmp_path / "board.md", "--force")
    assert (
        "> **Warning:** compared with --force although budgets differ" in (tmp_path / "board.md").read_text()
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [({"task_version": 2}, "tasks differ"), ({"labels": LABELS[::-1]}, "label sets differ")],
)
def test_other_task_versions_or_label_sets_are_refused(tmp_path, change, problem):
    a = write_run(tmp_path, "a", method="xpe")
    b = write_run(tmp_path, "b", method="spt", **change)
    assert problem in _text("compare", a, b, code=2)


def test_coverage_when_runs_cover_different_languages(tmp_path):
    a = write_run(tmp_path, "a", method="xpe")
    b = write_run(tmp_path, "b", method="spt", languages=SHOWCASE[3:])
    report = _json("compare", a, b)
    assert set(report["coverage"]["compared"]) == set(SHOWCASE[3:])
    assert report["coverage"]["missing"] == {"b": list(SHOWCASE[:3])}
    assert [row["language"] for row in report["rows"]] == report["coverage"]["compared"]
    assert report["overall"]["compared"] == len(SHOWCASE) - 3
    text = _text("compare", a, b)
    assert "11 languages compared" in text and "b lacks 3: eng_Latn, zho_Hans, hin_Deva" in text


def test_different_test_items_need_force(tmp_path):
    a = write_run(tmp_path, "a", method="xpe")
    b = write_run(tmp_path, "b", method="spt", first_item=10)
    assert "different items" in _text("compare", a, b, code=2)
    report = _json("compare", a, b, "--force")
    assert {row["n"] for row in report["rows"]} == {ITEMS - 10}
    assert any("compared on the 30 test items" in warning for warning in report["warnings"])


def test_seeds_form_one_system(tmp_path):
    seeds = tmp_path / "xpe"
    for seed in (1, 2, 3):
        write_run(seeds, f"xpe-s{seed}", method="xpe", seed=seed, accuracy=0.8)
    single = write_run(tmp_path, "spt", method="spt", accuracy=0.4)
    report = _json("compare", seeds, single)
    assert report["a"]["seeds"] == [1, 2, 3] and report["b"]["seeds"] == [1]
    row = report["rows"][0]
    assert len(row["seed_accuracy_a"]) == 3 and row["sd_a"] > 0 and row["sd_b"] is None
    assert row["accuracy_a"]["value"] == pytest.approx(np.mean(row["seed_accuracy_a"]))
    assert {row["verdict"] for row in report["rows"]} == {"win"}
    assert "one seed" in _text("compare", seeds, single, "--test", "mcnemar", code=2)
    assert "same configuration" in _text("compare", seeds / "xpe-s1", seeds / "xpe-s2", code=2)
    write_run(seeds, "xpe-again", method="xpe", seed=2)
    assert "same configuration and seed 2" in _text("compare", seeds, single, code=2)


def test_a_single_run_has_no_run_level_test(tmp_path):
    seeds = tmp_path / "xpe"
    for seed in (1, 2, 3):
        write_run(seeds, f"xpe-s{seed}", method="xpe", seed=seed, accuracy=0.8)
    single = write_run(tmp_path, "spt", method="spt", accuracy=0.4)
    report = _json("compare", seeds, single, "--by", "joshi")
    assert report["overall"]["run_level"] == {"available": False, "reason": "1 run: no run-level test"}
    assert report["overall"]["wins"] > 0  # the seeds-fixed tests still apply
    printed = _text("compare", seeds, single)
    assert (
        "run level (runs as the unit): 1 run: no run-level test; only the seeds-fixed tests apply" in printed
    )
    markdown = _invoke("compare", seeds, single, "--by", "group", "--format", "md")
    assert "| 1 run: no run-level test |" in markdown


def test_run_level_comparison_of_seeds(tmp_path):
    """Three seeds against three: the run-level Δ is the seeds-fixed Δ, with an interval that includes the
    spread between runs (Welch's t-test on the runs' means as the cross-check)."""
    for seed in (1, 2, 3):
        write_run(tmp_path / "xpe", f"xpe-s{seed}", method="xpe", seed=seed, accuracy=0.8)
        write_run(tmp_path / "spt", f"spt-s{seed}", method="spt", seed=seed, accuracy=0.5)
    report = _json("compare", tmp_path / "xpe", tmp_path / "spt", "--by", "group")
    overall = report["overall"]
    run_level = overall["run_level"]
    assert run_level["available"] and run_level["verdict"] == "better" and not run_level["paired_seeds"]
    assert run_level["difference"]["value"] == pytest.approx(overall["difference"]["value"])
    means_a, means_b = run_level["run_means_a"], run_level["run_means_b"]
    welch = stats.ttest_ind(means_a, means_b, equal_var=False)
    assert run_level["t_test_p"] == pytest.approx(welch.pvalue)
    assert run_level["df"] > 1 and 2 <= run_level["seeds_needed"] <= 3  # a 30-point gap needs few runs
    assert run_level["difference"]["low"] < overall["difference"]["low"]  # wider than seeds fixed
    assert set(run_level["variance_components"]) == {"seeds_a", "seeds_b", "languages"}
    assert all(row["run_level"]["available"] for row in report["rows"])
    paired = _json("compare", tmp_path / "xpe", tmp_path / "spt", "--paired-seeds")
    assert paired["paired_seeds"] and paired["overall"]["run_level"]["paired_seeds"]
    printed = _text("compare", tmp_path / "xpe", tmp_path / "spt", "--paired-seeds")
    assert "run level (runs as the unit, seeds paired):" in printed and "paired t-test" in printed
    write_run(tmp_path / "dual", "dual-s1", method="dual", seed=1)
    write_run(tmp_path / "dual", "dual-s4", method="dual", seed=4)
    refused = _text("compare", tmp_path / "dual", tmp_path / "spt", "--paired-seeds", code=2)
    assert "--paired-seeds needs the same seeds in both systems; dual has 1, 4 and spt has 1, 2, 3" in refused


def test_compact_files_compare_like_run_directories(tmp_path):
    a = write_run(tmp_path, "a", method="xpe", accuracy=0.7)
    b = write_run(tmp_path, "b", method="spt", accuracy=0.5)
    direct = _json("compare", a, b)
    packed = _json("compare", export_run(a, tmp_path / "compact"), export_run(b, tmp_path / "compact"))
    assert packed["rows"] == direct["rows"]
    assert packed["a"]["runs"] == [str(tmp_path / "compact" / "a.json.gz")]


def test_system_labels_tell_apart_options_of_one_method(tmp_path, registry):
    short = write_run(tmp_path, "short", options={"num_tokens": 10})
    long = write_run(tmp_path, "long", options={"num_tokens": 20})
    comparison = prepare([short, long], registry=registry)
    assert [system.label for system in comparison.systems] == ["spt (num_tokens=10)", "spt (num_tokens=20)"]
    with pytest.raises(UserInputError, match="matches 2 systems"):
        comparison.system("spt")
    assert comparison.system("spt (num_tokens=20)").runs[0].path == long


def test_bad_paths_and_references_exit_2(tmp_path):
    a = write_run(tmp_path, "a", method="xpe")
    assert "no such run" in _text("compare", a, tmp_path / "missing", code=2)
    assert "no run directories" in _text("compare", a, tmp_path / "a" / "predictions", code=2)
    assert "no system 'nope'" in _text(
        "leaderboard", a, "--reference", "nope", "--out", tmp_path / "x.md", code=2
    )
    assert ".md" in _text("leaderboard", a, "--out", tmp_path / "x.txt", code=2)


# leaderboard ------------------------------------------------------------------------------------------------
@pytest.fixture
def three_systems(tmp_path: Path) -> list[Path]:
    for seed in (1, 2, 3):
        write_run(tmp_path / "runs" / "xpe", f"xpe-s{seed}", method="xpe", seed=seed, accuracy=0.85)
        write_run(tmp_path / "runs" / "spt", f"spt-s{seed}", method="spt", seed=seed, accuracy=0.6)
    write_run(tmp_path / "runs" / "dual", "dual-s1", method="dual", accuracy=0.65, languages=SHOWCASE[:-1])
    return [tmp_path / "runs" / name for name in ("xpe", "spt", "dual")]


def test_leaderboard_is_complete_and_regenerates_bit_for_bit(tmp_path, three_systems):
    out = tmp_path / "boards" / "demo.md"
    args = ["leaderboard", *three_systems, "--reference", "spt", "--out", out]
    printed = _text(*args)
    assert "3 systems" in printed
    markdown, png = out.read_text(encoding="utf-8"), out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and "![accuracy per Joshi class](demo.png)" in markdown

    command = markdown.split("```sh\n")[1].split("\n```")[0]
    assert shlex.split(command) == [
        *("xpe-bench", "leaderboard", *map(str, three_systems)),
        *("--by", "joshi", "--by", "group", "--reference", "spt", "--out", str(out)),
    ]
    _invoke(*shlex.split(command)[1:])  # the header's own command regenerates the same bytes
    assert out.read_text(encoding="utf-8") == markdown and out.with_suffix(".png").read_bytes() == png

    headings = [line.split(" — ")[0] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Convergence"
    assert headings[1:8] == [f"## joshi-{k}" for k in range(5, -1, -1)] + ["## unclassified"]
    assert "## low-performing" in headings and headings[-1] == "## all"
    assert "| task | sib200 v1 (7 labels) |" in markdown
    assert "| seeds | dual: 1; spt: 1, 2, 3; xpe: 1, 2, 3 |" in markdown
    assert "dual-s1 lacks 1: kir_Cyrl" in markdown
    assert "left out because only some runs predicted them: kir_Cyrl" in markdown
    joshi5 = markdown.split("## joshi-5")[1].split("## joshi-4")[0]
    rows = [line for line in joshi5.splitlines() if line[:4] in {"| 1 ", "| 2 ", "| 3 "}]
    assert [row.split(" | ")[1] for row in rows] == ["xpe", "dual", "spt"]
    assert "| 2/0/0 |" in rows[0] and "| reference |" in rows[2] and "| 42 |" in rows[0]
    # Δ vs the reference is the difference of the two mean accuracies (up to rounding); seeds fixed, its
    # interval lies above 0; at run level, with 2 languages whose differences are 13 points apart, it does not
    cells = {row.split(" | ")[1]: row.split(" | ") for row in rows}
    run_level, seeds_fixed = cells["xpe"][7], cells["xpe"][11]
    assert run_level.split()[0] == seeds_fixed.split()[0]
    assert seeds_fixed.startswith("+") and float(seeds_fixed.split()[0]) == pytest.approx(
        float(cells["xpe"][2].split()[0]) - float(cells["spt"][2].split()[0]), abs=0.11
    )
    assert float(seeds_fixed.split("[")[1].split(",")[0]) > 0
    assert float(run_level.split("[")[1].split(",")[0]) < 0 and cells["xpe"][9] == "no difference shown"
    # dual has one run: no run-level test, the seeds-fixed columns stay
    assert cells["dual"][7:11] == [cells["dual"][11].split()[0], "–", "1 run: no run-level test", "–"]
    # over all 13 languages the run-level verdict is clear, and 2 to 4 seeds would have sufficed
    everything = markdown.split("## all —")[1]
    xpe_all = next(line for line in everything.splitlines() if line.startswith("| 1 | xpe")).split(" | ")
    assert xpe_all[9] == "better" and float(xpe_all[8]) < 0.001 and 2 <= int(xpe_all[10]) <= 4
    # Wilcoxon over the 13 compared languages, all in xpe's favour: exact two-sided p = 2 / 2**13
    assert xpe_all[12] == f"{2 / 2**13:.2g}"
    assert "| run level | against spt, runs as the unit: hierarchical bootstrap" in markdown
    assert "| seeds fixed | against spt: Δ interval as the accuracy intervals; W/T/L" in markdown


def test_leaderboard_by_joshi_only_without_reference(tmp_path, three_systems):
    out = tmp_path / "joshi.md"
    _invoke("leaderboard", *three_systems, "--by", "joshi", "--out", out)
    markdown = out.read_text(encoding="utf-8")
    assert "## unclassified" in markdown and "## low-performing" not in markdown
    assert "| verdicts | no reference given (--reference) |" in markdown
    assert "| Δ, run level [95% CI] |" in markdown and "| seeds fixed: W/T/L |" in markdown


def test_leaderboard_named_groups_are_chosen_and_checked(tmp_path, three_systems):
    out = tmp_path / "groups.md"
    groups = ("--group", "seen-92", "--group", "all")
    _invoke("leaderboard", *three_systems, "--by", "group", *groups, "--out", out)
    markdown = out.read_text(encoding="utf-8")
    headings = [line.split(" — ")[0] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Convergence", "## seen-92", "## all"]
    assert "--group seen-92 --group all" in markdown  # the regenerating command keeps the choice
    printed = _text("leaderboard", *three_systems, "--group", "nope", "--out", tmp_path / "x.md", code=2)
    assert "no group 'nope'" in printed and "low-performing" in printed


def test_leaderboard_says_when_the_task_has_no_language_in_a_class(tmp_path):
    nusax = ("ace", "ban", "bjn", "bug", "eng", "ind", "jav", "mad", "min", "nij", "sun", "bbc")
    labels = ["negative", "neutral", "positive"]
    runs = [
        write_run(tmp_path, f"{method}-s1", method=method, task="nusax-senti", labels=labels, languages=nusax)
        for method in ("spt", "xpe")
    ]
    out = tmp_path / "nusax.md"
    _invoke("leaderboard", *runs, "--reference", "spt", "--group", "local", "--out", out)
    markdown = out.read_text(encoding="utf-8")
    joshi4 = markdown.split("## joshi-4")[1].split("## ")[0]
    assert "The task has no language in this class." in joshi4 and "| 1 |" not in joshi4
    assert "Compared on 10 of 10 languages." in markdown.split("## local")[1]


def _published_csv(path: Path, languages: tuple[str, ...]) -> Path:
    rows = [f"{code},{30 + i},{40 + 2 * i}" for i, code in enumerate(languages)]
    path.write_text(
        "# Paper X, Table 7.\n# Averages are over families.\ncode,gpt35,gpt4\n" + "\n".join(rows) + "\n"
    )
    return path


def test_leaderboard_sets_replays_beside_the_published_table(tmp_path, registry):
    from xpe_bench.comparison import load_run
    from xpe_bench.metrics import accuracy
    from xpe_bench.published import family_mean

    replay = {"source": "gpt-4", "predictions_dir": ""}
    runs = [
        write_run(tmp_path / "runs", "spt-s1", accuracy=0.6),
        write_run(
            tmp_path / "runs", "strict", method="replay-gpt-4", options={**replay, "scoring": "strict"}
        ),
        write_run(
            tmp_path / "runs",
            "fractional",
            method="replay-gpt-4",
            options={**replay, "scoring": "fractional"},
        ),
    ]
    # a tie in the fractional run: item 0 of English shares its answer between its gold label and another
    english = runs[2] / "predictions" / "eng_Latn.jsonl"
    lines = english.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "pred": first["gold"], "tied": [first["gold"], first["gold"] + 1]})
    english.write_text("\n".join(lines) + "\n")
    published = _published_csv(tmp_path / "paper.csv", SHOWCASE[:-1])  # kir_Cyrl is not in the paper
    out = tmp_path / "board.md"
    _invoke("leaderboard", tmp_path / "runs", "--reference", "spt", "--published", published, "--out", out)
    markdown = out.read_text(encoding="utf-8")
    assert f"--published {published}" in markdown  # the header's command regenerates the section
    section = markdown.split("## Replays against the published table (paper.csv)")[1]
    assert "> Paper X, Table 7.\n> Averages are over families." in section
    assert "### gpt35" not in section  # no system replays it
    table = section.split("### gpt4")[1]
    header = next(line for line in table.splitlines() if line.startswith("| group"))
    assert header.strip("| ").split(" | ")[2:] == [
        "published gpt4",
        'replay-gpt-4 (scoring="fractional")',
        'replay-gpt-4 (scoring="strict")',
    ]
    cells = {
        line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines() if line.startswith("| ")
    }

    gpt4 = {code: (40 + 2 * i) / 100 for i, code in enumerate(SHOWCASE[:-1])}
    per_language = {
        name: {lang: accuracy(i.gold, i.pred, i.tied) for lang, i in load_run(run).predictions.items()}
        for name, run in (("fractional", runs[2]), ("strict", runs[1]))
    }
    assert per_language["fractional"]["eng_Latn"] * ITEMS % 1 == 0.5  # the tie earned half an item

    def cell(values: dict[str, float], codes: list[str]) -> str:
        return f"{100 * np.mean([values[c] for c in codes]):.1f}"

    joshi5 = ["eng_Latn", "zho_Hans"]
    assert cells["joshi-5"][1:3] == ["2", cell(gpt4, joshi5)]
    assert cells["joshi-5"][3].startswith(cell(per_language["fractional"], joshi5) + " (")
    assert cells["all"][1:3] == ["13", cell(gpt4, list(gpt4))]
    families = {code: registry.tasks["sib200"].languages[code].family for code in gpt4}
    family_row = cells[f"all, mean over {family_mean(gpt4, families)[1]} language families"]
    assert family_row[2] == f"{100 * family_mean(gpt4, families)[0]:.1f}"
    strict = {code: per_language["strict"][code] for code in gpt4}
    assert family_row[4].startswith(f"{100 * family_mean(strict, families)[0]:.1f} (")

    low = markdown.split("## low-performing")[1].split("\n## ")[0]
    assert (
        "Note: this group is defined by XLM-R (accuracy below 60% under full fine-tuning of XLM-R-large"
        in low
    )
    assert "not by this board's backbone (me5-small)" in low
    unseen = markdown.split("## unseen")[1].split("\n## ")[0]
    assert "defined by XLM-R (membership in CC100, XLM-R's pretraining data)" in unseen
    assert "defined by XLM-R" not in markdown.split("## joshi-5")[1].split("\n## ")[0]

    refused = _text("compare", runs[2], runs[1], "--test", "mcnemar", code=2)
    assert "--test mcnemar needs right/wrong items" in refused and "use --test permutation" in refused

    other = _published_csv(tmp_path / "other.csv", SHOWCASE).read_text().replace("gpt35,gpt4", "bert,t5")
    (tmp_path / "other.csv").write_text(other)
    printed = _text(
        "leaderboard", tmp_path / "runs", "--published", tmp_path / "other.csv", "--out", out, code=2
    )
    assert "no system replays any of its columns (bert, t5)" in printed
