"""Third-party plugins: the example package installs and runs through the CLI; broken ones are contained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xpe_bench.plugins import load_registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "xpe-bench-centroid"


def _fake_distribution(root: Path, name: str, entry_points: str) -> None:
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)


def test_plugin_that_fails_to_import_is_reported_not_fatal(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "broken-plugin", "[xpe_bench]\nbroken = xpe_bench_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry()
    info = {p.name: p for p in registry.plugins}
    assert info["broken"].status == "failed"
    assert "No module named 'xpe_bench_no_such_module'" in info["broken"].error
    assert info["broken"].distribution == "broken-plugin"
    assert "spt" in registry.methods and "sib200" in registry.tasks


def test_plugin_table_keeps_brackets_of_an_error(tmp_path, monkeypatch):
    """Error texts are shown as they are, never read as rich markup (which would drop ``[gpu]``)."""
    from typer.testing import CliRunner

    from xpe_bench.cli import app

    (tmp_path / "xpe_bench_needs_extra.py").write_text('raise ImportError("pip install xpe-extra[gpu]")\n')
    _fake_distribution(tmp_path, "needs-extra", "[xpe_bench]\nneeds_extra = xpe_bench_needs_extra\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "pip install xpe-extra[gpu]" in result.output


def test_builtins_register_through_entry_points():
    registry = load_registry()
    names = {p.name for p in registry.plugins if p.status == "loaded"}
    assert {"builtin_tasks", "builtin_backbones", "prompt_tuning"} <= names
    assert all(p.distribution == "xpe-bench" for p in registry.plugins if p.name in names)


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
    )
    return target


def _cli(args: list[str], site: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(site), "XPE_BENCH_CACHE": str(cache_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "xpe_bench", *args], env=env, capture_output=True, text=True)


@pytest.mark.data
def test_example_plugin_installs_and_runs_through_the_cli(installed_example, cache_dir, tmp_path):
    listed = _cli(["plugins", "--format", "json"], installed_example, cache_dir)
    assert listed.returncode == 0, listed.stderr
    plugins = {row["name"]: row for row in json.loads(listed.stdout)}
    assert plugins["centroid"]["status"] == "loaded"
    assert plugins["centroid"]["distribution"] == "xpe-bench-centroid"

    run = _cli(
        [
            "run",
            "--method",
            "centroid",
            "--backbone",
            "tiny-random",
            "--budget",
            "smoke",
            "--task",
            "sib200",
            "--sources",
            "eng_Latn,fra_Latn",
            "--targets",
            "eng_Latn,swh_Latn",
            "--runs-dir",
            str(tmp_path),
        ],
        installed_example,
        cache_dir,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "per Joshi class" in run.stdout
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["method"]["name"] == "centroid" and manifest["status"] == "complete"
    assert manifest["fit"]["train_examples"] == 16
    assert (run_dir / "state.safetensors").exists()
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["eng_Latn.jsonl", "swh_Latn.jsonl"]

    bad = _cli(["run", "--method", "centroid", "-o", "batch_size=0"], installed_example, cache_dir)
    assert bad.returncode == 2 and "option centroid.batch_size: '0'; valid: >= 1" in bad.stderr, bad.stderr


def test_disable_env_skips_the_example(installed_example, cache_dir):
    env_args = ["methods", "--format", "json"]
    os.environ["XPE_BENCH_DISABLE_PLUGINS"] = "centroid"
    try:
        result = _cli(env_args, installed_example, cache_dir)
    finally:
        del os.environ["XPE_BENCH_DISABLE_PLUGINS"]
    assert result.returncode == 0
    assert "centroid" not in {row["name"] for row in json.loads(result.stdout)}
