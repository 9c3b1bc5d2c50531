"""A plugin that breaks at hook time or misnames a hook fails alone, with a reason; everything else works."""

from __future__ import annotations

import json
import types
from pathlib import Path

from typer.testing import CliRunner

from xpe_bench.cli import app
from xpe_bench.hookspecs import hookimpl
from xpe_bench.methods import Method, MethodSpec
from xpe_bench.plugins import load_registry
from xpe_bench.tasks import TaskSpec

REPO = Path(__file__).resolve().parents[1]


def _plugin(name: str, **hooks: object) -> types.ModuleType:
    """A plugin module made at runtime, holding ``hooks`` (functions) as its attributes."""
    module = types.ModuleType(name)
    for attr, function in hooks.items():
        setattr(module, attr, function)
    return module


def _method(name: str) -> MethodSpec:
    return MethodSpec(name, f"test method {name}", Method)


def _status(registry, name: str):
    return {info.name: info for info in registry.plugins}[name]


def test_a_raising_hook_fails_its_plugin_only():
    @hookimpl
    def xpe_bench_tasks():
        raise FileNotFoundError("news_languages.csv")

    @hookimpl
    def xpe_bench_methods():
        return [_method("news-method")]

    registry = load_registry(
        [_plugin("news", xpe_bench_tasks=xpe_bench_tasks, xpe_bench_methods=xpe_bench_methods)]
    )
    info = _status(registry, "news")
    assert info.status == "failed"
    assert info.error.startswith("hook xpe_bench_tasks raised FileNotFoundError: news_languages.csv (at ")
    assert f"{Path(__file__)}:" in info.error  # where it was raised
    assert "news-method" not in registry.methods  # a failed plugin provides nothing at all
    assert "sib200" in registry.tasks and "spt" in registry.methods
    assert registry.task("sib200").name == "sib200"


def test_invalid_hook_results_fail_their_plugin():
    cases = {
        "returns-none": (lambda: None, "hook xpe_bench_methods must return a list of MethodSpec, got None"),
        "returns-a-spec": (lambda: _method("x"), "must return a list of MethodSpec, got a MethodSpec"),
        "returns-strings": (lambda: ["spt"], "hook xpe_bench_methods returned a str, not a MethodSpec"),
        "wrong-spec-type": (lambda: [object.__new__(TaskSpec)], "returned a TaskSpec, not a MethodSpec"),
        "nameless": (lambda: [_method("")], "returned a MethodSpec named ''"),
        "takes-a-builtin": (
            lambda: [_method("spt")],
            "method 'spt' is already provided by plugin 'prompt_tuning'",
        ),
        "twice": (lambda: [_method("twin"), _method("twin")], "returns method 'twin' twice"),
    }
    plugins = [_plugin(name, xpe_bench_methods=hookimpl(hook)) for name, (hook, _) in cases.items()]
    registry = load_registry(plugins)
    for name, (_, message) in cases.items():
        info = _status(registry, name)
        assert info.status == "failed" and message in info.error, (name, info.error)
    assert registry.methods["spt"].factory is not Method  # the built-in keeps its name
    assert "twin" not in registry.methods


def test_a_task_that_fails_validation_fails_its_plugin(tmp_path):
    toml = (REPO / "tasks" / "sib200.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(toml.replace('name = "sib200"', 'name = "bad"').replace("size = 3", "size = 4", 1))

    @hookimpl
    def xpe_bench_tasks():
        return [TaskSpec.from_toml(bad)]

    registry = load_registry([_plugin("badtask", xpe_bench_tasks=xpe_bench_tasks)])
    info = _status(registry, "badtask")
    assert info.status == "failed" and info.error.startswith("hook xpe_bench_tasks raised")
    assert "bad.toml" in info.error and "declared size 4" in info.error  # names the file and the fault
    assert "bad" not in registry.tasks and "sib200" in registry.tasks


def test_the_first_of_two_plugins_keeps_a_shared_name():
    first = _plugin("first", xpe_bench_methods=hookimpl(lambda: [_method("shared")]))
    second = _plugin("second", xpe_bench_methods=hookimpl(lambda: [_method("shared"), _method("other")]))
    registry = load_registry([first, second])
    assert _status(registry, "first").provides == {"methods": ("shared",)}
    assert "already provided by plugin 'first'" in _status(registry, "second").error
    assert "other" not in registry.methods


def test_misspelled_and_unmarked_hooks_are_reported():
    @hookimpl
    def xpe_bench_method():
        return [_method("never")]

    def xpe_bench_tasks():
        return []

    registry = load_registry(
        [
            _plugin("typo", xpe_bench_method=xpe_bench_method),
            _plugin("unmarked", xpe_bench_tasks=xpe_bench_tasks),
        ]
    )
    typo = _status(registry, "typo")
    assert typo.status == "failed"
    assert typo.error == "unknown hook 'xpe_bench_method' (did you mean 'xpe_bench_methods'?)"
    assert (
        _status(registry, "unmarked").error
        == "xpe_bench_tasks is not marked with @hookimpl, so it registers nothing"
    )
    assert "never" not in registry.methods and "spt" in registry.methods


def test_plugins_lists_what_each_provides():
    registry = load_registry()
    provides = {info.name: info.provides for info in registry.plugins}
    assert provides["prompt_tuning"]["methods"] == ("spt", "xpe", "dual", "dual-30", "dual-70")
    assert "sib200" in provides["builtin_tasks"]["tasks"]
    assert provides["builtin_backbones"] == {"backbones": ("me5-small", "tiny-random")}
    assert _status(registry, "prompt_tuning").path.endswith("prompt_tuning_specs.py")


def _fake_distribution(root: Path, name: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(source)
    dist = (
        root / f"{name.replace('-', '_')}-0.1.dist-info"
    )  # a name's dashes end its stem: xpe-gpu reads as xpe
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[xpe_bench]\n{module} = {module}\n")


BROKEN_TASK_PLUGIN = """
from pathlib import Path

from xpe_bench.hookspecs import hookimpl
from xpe_bench.tasks import TaskSpec


@hookimpl
def xpe_bench_tasks():
    return [TaskSpec.from_toml(Path(__file__).with_name("missing.toml"))]
"""


def test_every_command_works_beside_a_plugin_whose_hook_raises(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "xpe-news", "xpe_news", BROKEN_TASK_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    env = {"COLUMNS": "300"}
    for args in (["tasks"], ["methods"], ["languages", "--task", "sib200", "--groups"], ["backbones"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        warnings = [line for line in result.stderr.splitlines() if "xpe_news" in line]
        assert len(warnings) == 1 and warnings[0].startswith("warning: plugin xpe_news failed"), result.stderr
        assert "missing.toml" in warnings[0]
    assert "sib200" in runner.invoke(app, ["tasks"], env=env).stdout

    run = [
        "run",
        *("--method", "spt", "--backbone", "tiny-random", "--budget", "smoke", "--task", "sib200"),
        *("--sources", "eng_Latn", "--targets", "eng_Latn", "--runs-dir", str(tmp_path / "runs")),
    ]
    result = runner.invoke(app, run, env=env)
    assert result.exit_code == 0, result.output
    assert (next((tmp_path / "runs").iterdir()) / "metrics.json").is_file()

    unknown = runner.invoke(app, ["languages", "--task", "news"], env=env)
    assert unknown.exit_code == 2
    assert "unknown task 'news'" in unknown.stderr and "failed plugins: xpe_news" in unknown.stderr

    listed = runner.invoke(app, ["plugins", "--format", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    row = {row["name"]: row for row in json.loads(listed.stdout)}["xpe_news"]
    assert row["status"] == "failed" and row["provides"] == {}
    assert row["error"].startswith("hook xpe_bench_tasks raised")
    assert row["error"].endswith(f"(at {tmp_path / 'xpe_news.py'}:10)")  # the plugin's line, not pathlib's
    assert row["path"] == str(tmp_path / "xpe_news.py") and row["distribution"] == "xpe-news"


def test_an_import_failure_names_the_plugin_line_that_raised(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path, "xpe-gpu", "xpe_gpu", 'import os\nraise ImportError("pip install xpe-gpu[cuda]")\n'
    )
    _fake_distribution(tmp_path, "xpe-gone", "xpe_gone", "import xpe_bench_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = {info.name: info for info in load_registry().plugins}
    assert (
        plugins["xpe_gpu"].error == f"ImportError: pip install xpe-gpu[cuda] (at {tmp_path / 'xpe_gpu.py'}:2)"
    )
    where = tmp_path / "xpe_gone.py"
    missing = "No module named 'xpe_bench_no_such_module'"
    assert plugins["xpe_gone"].error == f"ModuleNotFoundError: {missing} (at {where}:1)"
