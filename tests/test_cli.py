"""The command line contract: listings, JSON output, exit code 2 on bad input, runs."""

from __future__ import annotations

import json
import typing

import pytest
from typer.testing import CliRunner

from xpe_bench import cli
from xpe_bench.cli import app

runner = CliRunner()


def _json(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_command_has_help():
    for command in (
        "run",
        "tasks",
        "methods",
        "budgets",
        "plugins",
        "languages",
        "backbones",
        "prepare",
        "inspect",
        "compare",
        "leaderboard",
        "curves",
    ):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output


def test_run_help_names_every_budget_preset():
    """The --budget help lists the presets by hand (listing them at start-up would import numpy)."""
    from xpe_bench.budgets import preset_names

    option = typing.get_type_hints(cli.run, include_extras=True)["budget"].__metadata__[0]
    assert option.help.startswith(f"preset ({', '.join(sorted(preset_names(), key=PRESET_ORDER.index))})")


PRESET_ORDER = ["smoke", "quick", "standard", "paper", "paper-target"]
"""The order the help gives them in: by cost."""


def test_low_performing_lists_exactly_46():
    rows = _json(["languages", "--group", "low-performing", "--format", "json"])
    assert len(rows) == 46
    assert {row["code"] for row in rows} >= {"bod_Tibt", "nqo_Nkoo", "yor_Latn"}
    assert all(row["cc100"] is False and row["low_performing"] is True for row in rows)


def test_languages_filters_and_groups():
    joshi5 = _json(["languages", "--group", "joshi5", "--format", "json"])
    assert len(joshi5) == 7
    seen = {row["code"] for row in _json(["languages", "--group", "seen-92", "--format", "json"])}
    assert "tgl_Latn" in seen and "azb_Arab" not in seen and len(seen) == 92
    unclassified = _json(["languages", "--joshi", "unclassified", "--format", "json"])
    assert len(unclassified) == 27 and all(row["joshi"] is None for row in unclassified)
    groups = {row["group"]: row["languages"] for row in _json(["languages", "--groups", "--format", "json"])}
    assert groups["all-wo-joshi5"] == 198 and groups["unseen"] == 113


def test_listings_in_json():
    assert "sib200" in {row["name"] for row in _json(["tasks", "--format", "json"])}
    methods = {row["name"]: row for row in _json(["methods", "--format", "json"])}
    assert {"spt", "xpe", "dual", "dual-30", "dual-70"} <= set(methods)
    assert methods["xpe"]["valid"]["xpe_dropout"] == "in [0.0, 1.0)"
    plugins = {row["name"]: row for row in _json(["plugins", "--format", "json"])}
    assert plugins["prompt_tuning"]["status"] == "loaded"
    assert plugins["prompt_tuning"]["distribution"] == "xpe-bench"
    assert {"smoke", "quick", "paper"} <= {row["name"] for row in _json(["budgets", "--format", "json"])}
    assert {"me5-small", "tiny-random"} <= {row["name"] for row in _json(["backbones", "--format", "json"])}


def test_every_builtin_option_is_typed_and_documented():
    """`methods NAME` shows each option's type, default, valid values and help; built-ins document all."""
    names = [row["name"] for row in _json(["methods", "--format", "json"])]
    described = {row["name"]: row["options"] for row in _json(["methods", *names, "--format", "json"])}
    assert set(described) == set(names)
    undocumented = [(n, o["option"]) for n, options in described.items() for o in options if not o["help"]]
    assert undocumented == []
    lora = {o["option"]: o for o in described["lora"]}
    assert lora["target_modules"]["type"] == "list of str" and lora["target_modules"]["default"] == [
        "query",
        "value",
    ]
    assert lora["r"]["valid"] == ">= 1" and lora["r"]["type"] == "int"
    assert {o["option"]: o for o in described["replay"]}["predictions_dir"]["valid"] == "any str"
    table = runner.invoke(app, ["methods", "xpe"], env={"COLUMNS": "200"})
    assert (
        table.exit_code == 0
        and "xpe_dropout" in table.output
        and "dropout inside the XPE encoder" in table.output
    )
    unknown = runner.invoke(app, ["methods", "spt", "nope"])
    assert (
        unknown.exit_code == 2 and "unknown method 'nope'" in unknown.output and "spt:" not in unknown.output
    )


def test_a_malformed_command_line_is_a_usage_error():
    """Click's own errors (the one-line messages of bad values are tests/test_bad_input.py's)."""
    result = runner.invoke(app, ["languages", "--format", "xml"])
    assert result.exit_code == 2 and "'xml' is not one of" in result.output


def test_disabled_plugin_is_reported_and_its_methods_gone(monkeypatch):
    monkeypatch.setenv("XPE_BENCH_DISABLE_PLUGINS", "prompt_tuning")
    plugins = {row["name"]: row for row in _json(["plugins", "--format", "json"])}
    assert plugins["prompt_tuning"]["status"] == "disabled"
    assert "spt" not in {row["name"] for row in _json(["methods", "--format", "json"])}
    assert len(_json(["languages", "--group", "joshi5", "--format", "json"])) == 7


def test_run_prints_tables_and_run_dir(tmp_path, mock_task):
    args = [
        "run",
        "--task",
        mock_task,
        "--method",
        "spt",
        "--backbone",
        "tiny-random",
        "--budget",
        "smoke",
        "--sources",
        "aaa_Latn",
        "--targets",
        "aaa_Latn,ccc_Cyrl",
        "--runs-dir",
        str(tmp_path),
        "--seed",
        "1,2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "per Joshi class" in result.output and "unclassified" in result.output
    assert result.output.count("run directory:") == 2
    # smoke evaluates twice: too few points for the convergence rule, so each run warns in one line
    assert result.output.count("warning: not converged by dev-plateau v1 (2 dev evaluation(s)") == 2
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    ("method", "trainable"),
    [("spt", 1_077_255), ("xpe", 1_668_615), ("dual-30", 1_668_615), ("dual-70", 1_668_615)],
)
def test_inspect_gives_the_papers_parameter_counts_offline(method, trainable):
    report = _json(
        [
            "inspect",
            "--method",
            method,
            "--backbone",
            "xlm-roberta-large",
            "--random-init",
            "--format",
            "json",
        ]
    )
    assert report["trainable"] == trainable
    assert report["modules"]["encoder"] == {"total": 558_840_832, "trainable": 0}
    assert report["modules"]["head"]["trainable"] == 1_056_775


def test_inspect_breakdown_adds_up_and_unknown_backbone_is_a_user_error(monkeypatch):
    report = _json(
        [
            "inspect",
            "--method",
            "dual-30",
            "--backbone",
            "xlm-roberta-base",
            "--random-init",
            "--format",
            "json",
        ]
    )
    modules = report["modules"]
    assert (
        modules["prompt.spt_table"]["total"] == 14 * 768 and modules["prompt.xpe_table"]["total"] == 6 * 768
    )
    top = [v["total"] for k, v in modules.items() if "." not in k]
    assert sum(top) == report["total"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    result = runner.invoke(app, ["inspect", "--backbone", "no-such/model", "--random-init"])
    assert result.exit_code == 2 and "no config available offline" in result.output
