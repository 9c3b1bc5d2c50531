"""Tasks as packages: a task file's own language table, text templates, per-language label subsets, a
per-task data root, an identity over the whole definition, one-line errors naming the file; and the example
task package (examples/xpe-bench-newstopics) installed and run end to end."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpe_bench.errors import UserInputError
from xpe_bench.paths import DATA_ENV, resolve_data_root
from xpe_bench.tasks import BUILTIN_TABLES, TaskData, TaskSpec, builtin_task_specs

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "xpe-bench-newstopics"
EXAMPLE_TASK = EXAMPLE / "xpe_bench_newstopics" / "toy-news.toml"

TABLE = """code,name,joshi,family,script,region,cc100
aaa_Latn,Aaa,3,Indo-European,Latn,Europe_1,1
bbb_Latn,Bbb,,Turkic,Latn,Asia_1,0
"""


def _task_file(folder: Path, body: str = "", *, languages: str = 'languages = "langs.csv"') -> Path:
    """A minimal valid task file (plus its language table) in ``folder``, with ``body`` appended."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "langs.csv").write_text(TABLE)
    path = folder / "task.toml"
    path.write_text(
        f'name = "t"\nversion = 1\nlabels = ["x", "y", "z"]\n{languages}\ndata_root = "data"\n{body}\n'
        '[fields]\ntext = "text"\nlabel = "label"\n[local]\npath = "{lang}/{split}.tsv"\n'
    )
    return path


def _data(root: Path, lang: str, split: str, header: str, *rows: str) -> None:
    (root / lang).mkdir(parents=True, exist_ok=True)
    (root / lang / f"{split}.tsv").write_text("\n".join([header, *rows]) + "\n")


# --- identity -----------------------------------------------------------------------------------------------


def test_builtin_definition_hashes_are_unchanged():
    """The built-in tasks read their tables unchanged, so their identity is still the hash of the TOML alone:
    every stored result (leaderboards/results) keeps its key."""
    specs = {spec.name: spec for spec in builtin_task_specs()}
    for name, spec in specs.items():
        assert (
            spec.definition_sha256
            == hashlib.sha256((REPO / "tasks" / f"{name}.toml").read_bytes()).hexdigest()
        )
    stored = {}
    for path in sorted((REPO / "leaderboards" / "results").rglob("*.json.gz")):
        task = json.loads(gzip.decompress(path.read_bytes()))["manifest"]["task"]
        stored.setdefault(task["name"], set()).add(task["definition_sha256"])
    assert stored, "no stored results to check against"
    for name, hashes in stored.items():
        assert hashes == {specs[name].definition_sha256}, name
    resources = REPO / "xpe_bench" / "resources"
    for name, pinned in BUILTIN_TABLES.items():
        assert hashlib.sha256((resources / name).read_bytes()).hexdigest() == pinned, f"{name} was edited"


def test_the_identity_covers_the_language_table(tmp_path):
    path = _task_file(tmp_path)
    before = TaskSpec.from_toml(path).definition_sha256
    assert before != hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "langs.csv").write_text(TABLE.replace("Bbb", "Bbbb"))
    assert TaskSpec.from_toml(path).definition_sha256 != before


def test_an_edited_builtin_table_changes_the_identity(tmp_path, monkeypatch):
    import xpe_bench.tasks as tasks

    sib200 = REPO / "tasks" / "sib200.toml"
    monkeypatch.setitem(tasks.BUILTIN_TABLES, "sib200_languages.csv", "0" * 64)  # as if the table had changed
    assert TaskSpec.from_toml(sib200).definition_sha256 != hashlib.sha256(sib200.read_bytes()).hexdigest()


# --- language tables ----------------------------------------------------------------------------------------


def test_language_table_resolves_next_to_the_task_file(tmp_path):
    spec = TaskSpec.from_toml(_task_file(tmp_path, "[groups.seen]\nwhere = { cc100 = true }\nsize = 1"))
    assert list(spec.languages.languages) == ["aaa_Latn", "bbb_Latn"]
    assert spec.languages.groups["seen"] == ("aaa_Latn",)
    assert spec.data_root == (tmp_path / "data").resolve()


def test_language_table_inline(tmp_path):
    rows = (
        '[[languages]]\ncode = "aaa_Latn"\nname = "Aaa"\njoshi = 3\nfamily = "F"\nscript = "Latn"\n'
        'region = "R"\ncc100 = true\n'
        '[[languages]]\ncode = "bbb_Latn"\nname = "Bbb"\njoshi = ""\nfamily = "F"\nscript = "Latn"\n'
        'region = "R"\ncc100 = false\n'
    )
    path = tmp_path / "task.toml"
    path.write_text(
        'name = "t"\nversion = 1\nlabels = ["x", "y"]\n[fields]\ntext = "text"\nlabel = "label"\n'
        '[local]\npath = "{lang}/{split}.tsv"\n' + rows
    )
    spec = TaskSpec.from_toml(path)
    assert spec.languages["aaa_Latn"].joshi == 3 and spec.languages["bbb_Latn"].joshi is None
    assert not spec.languages["bbb_Latn"].cc100
    assert spec.definition_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # the TOML is all of it


# --- broken task files: one line naming the file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "languages", "message"),
    [
        ("labels = [", 'languages = "langs.csv"', "not a valid TOML task file"),
        ("[groups.g]\ncodes = ['aaa_Latn']\nsize = 2", 'languages = "langs.csv"', "declared size 2"),
        ("", 'languages = "nope.csv"', "language table 'nope.csv' not found next to the task file"),
        ("colour = 'red'", 'languages = "langs.csv"', "unknown fields ['colour']"),
        ("", "", "missing required field 'languages'"),
        ("[labels_per_language]\naaa_Latn = ['x', 'w']", 'languages = "langs.csv"', "unknown labels ['w']"),
        (
            "[labels_per_language]\nccc_Latn = ['x', 'y']",
            'languages = "langs.csv"',
            "unknown language 'ccc_Latn'",
        ),
        (
            "[labels_per_language]\naaa_Latn = ['x']",
            'languages = "langs.csv"',
            "at least two distinct labels",
        ),
    ],
)
def test_a_broken_task_file_is_one_line_naming_it(tmp_path, body, languages, message):
    path = _task_file(tmp_path, body, languages=languages)
    with pytest.raises(UserInputError) as caught:
        TaskSpec.from_toml(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


@pytest.mark.parametrize("template", ["{headline!r}", "{headline:>5}", "no {column", "{}", "a } b"])
def test_a_malformed_text_template_is_reported_at_load(tmp_path, template):
    path = _task_file(tmp_path)
    path.write_text(path.read_text().replace('text = "text"', f"text = {json.dumps(template)}"))
    with pytest.raises(UserInputError, match=r"fields\.text") as caught:
        TaskSpec.from_toml(path)
    assert str(caught.value).startswith(f"{path}: ")


# --- text templates and label subsets -----------------------------------------------------------------------


def test_text_template_over_two_columns(tmp_path):
    path = _task_file(tmp_path)
    path.write_text(path.read_text().replace('text = "text"', 'text = "{headline}\\n{body} {{x}}"'))
    spec = TaskSpec.from_toml(path)
    root = tmp_path / "data"
    _data(root, "aaa_Latn", "test", "headline\tbody\tlabel", "Vote today\tThe polls open.\tx")
    rows = TaskData(spec, root).load("aaa_Latn", "test")
    assert rows["text"] == ["Vote today\nThe polls open. {x}"]
    _data(root, "bbb_Latn", "test", "headline\tlabel", "Vote today\tx")
    with pytest.raises(UserInputError, match=r"bbb_Latn/test\.tsv:1: wrong columns: missing \['body'\]"):
        TaskData(spec, root).load("bbb_Latn", "test")


def test_label_subsets_restrict_items_and_predictions(tmp_path):
    spec = TaskSpec.from_toml(_task_file(tmp_path, "[labels_per_language]\nbbb_Latn = ['z', 'x']"))
    assert spec.labels_of("bbb_Latn") == ("x", "z") and spec.labels_of("aaa_Latn") == ("x", "y", "z")
    assert spec.allowed_label_mask("aaa_Latn") is None
    assert spec.allowed_label_mask("bbb_Latn").tolist() == [True, False, True]
    root = tmp_path / "data"
    _data(root, "bbb_Latn", "test", "text\tlabel", "a\tx", "b\ty")
    with pytest.raises(UserInputError, match=r"test\.tsv:3: label 'y' is not among the labels of bbb_Latn"):
        TaskData(spec, root).load("bbb_Latn", "test")


# --- data roots ---------------------------------------------------------------------------------------------


def test_a_task_data_root_counts_after_the_overrides(tmp_path, monkeypatch):
    own, env, cli = (tmp_path / name for name in ("own", "env", "cli"))
    for folder in (own, env, cli):
        folder.mkdir()
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_data_root(None, own) == own.resolve()
    monkeypatch.setenv(DATA_ENV, str(env))
    assert resolve_data_root(None, own) == env.resolve()
    assert resolve_data_root(cli, own) == cli.resolve()
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(UserInputError, match=r"the task's data_root: data directory .* does not exist"):
        resolve_data_root(None, tmp_path / "missing")


def test_a_missing_file_under_an_override_names_the_task_root(tmp_path):
    spec = TaskSpec.from_toml(_task_file(tmp_path))
    with pytest.raises(UserInputError, match=r"the task's own data_root .* is overridden by --data-dir or"):
        TaskData(spec, tmp_path).load("aaa_Latn", "test")


# --- the example task package, installed and run through the CLI --------------------------------------------


@pytest.fixture(scope="module")
def installed_task_package(tmp_path_factory) -> Path:
    """pip-installs the example (a real, non-editable install) into a folder put on $PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
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
            str(source),
        ],
        check=True,
    )
    return target


def _cli(args: list[str], site: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV}  # the package's own data_root serves it
    env |= {"PYTHONPATH": str(site), "XPE_BENCH_CACHE": str(cache_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "xpe_bench", *args], env=env, capture_output=True, text=True)


def test_example_task_package_installs_and_runs_through_the_cli(installed_task_package, cache_dir, tmp_path):
    site = installed_task_package
    plugins = {
        row["name"]: row for row in json.loads(_cli(["plugins", "--format", "json"], site, cache_dir).stdout)
    }
    assert plugins["newstopics"]["status"] == "loaded"
    assert plugins["newstopics"]["distribution"] == "xpe-bench-newstopics"
    tasks = {
        row["name"]: row for row in json.loads(_cli(["tasks", "--format", "json"], site, cache_dir).stdout)
    }
    assert "sib200" in tasks and tasks["toy-news"]["languages"] == 3
    assert tasks["toy-news"]["labels_per_language"]["amh_Ethi"] == ["politics", "sports", "business"]
    listed = _cli(["languages", "--task", "toy-news", "--group", "east", "--format", "json"], site, cache_dir)
    assert [row["code"] for row in json.loads(listed.stdout)] == ["swh_Latn", "amh_Ethi"]

    args = ["run", "--task", "toy-news", "--method", "spt", "--backbone", "tiny-random", "--budget", "smoke"]
    run = _cli([*args, "--runs-dir", str(tmp_path)], site, cache_dir)
    assert run.returncode == 0, run.stderr + run.stdout
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["task"]["name"] == "toy-news"
    assert manifest["sources"] == ["hau_Latn"] and manifest["data"]["train_examples"] == 8
    assert "hau_Latn/train.csv" in manifest["data"]["files"]
    installed = TaskSpec.from_toml(site / "xpe_bench_newstopics" / "toy-news.toml")
    assert manifest["task"]["definition_sha256"] == installed.definition_sha256
    for lang in ("hau_Latn", "swh_Latn", "amh_Ethi"):
        rows = [
            json.loads(line) for line in (run_dir / "predictions" / f"{lang}.jsonl").read_text().splitlines()
        ]
        allowed = [installed.labels.index(label) for label in installed.labels_of(lang)]
        assert len(rows) == 8 and {row["pred"] for row in rows} <= set(allowed), lang
        masked = [k for k in range(installed.num_labels) if k not in allowed]
        assert all(row["scores"][k] is None for row in rows for k in masked), (
            lang
        )  # masked: -inf, stored null
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"hau_Latn", "swh_Latn", "amh_Ethi"}
    assert all(np.isfinite(m["macro_f1"]) for m in metrics.values())


def test_a_broken_task_package_names_its_file(tmp_path, cache_dir):
    """A task file with a wrong group size fails in its hook with one line naming the file (isolating that
    failure from every other command is plugin discovery's job)."""
    package = tmp_path / "site" / "xpe_bench_newstopics"
    shutil.copytree(EXAMPLE / "xpe_bench_newstopics", package)
    task_file = package / "toy-news.toml"
    task_file.write_text(task_file.read_text().replace("size = 2", "size = 3"))
    env = os.environ | {"PYTHONPATH": str(tmp_path / "site")}
    probe = "import xpe_bench_newstopics as p; p.xpe_bench_tasks()"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert f"{task_file}: invalid task definition: group 'east' has 2 languages, declared size 3" in last
