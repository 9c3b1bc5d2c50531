"""The core's import graph has no cycle: every module of ``xpe_bench/`` can be read in an order."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "xpe_bench"


def _module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The core modules ``path`` imports when it is imported (not those imported inside functions, nor
    under ``if TYPE_CHECKING:``)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module == "xpe_bench":
            found |= {f"xpe_bench.{alias.name}" for alias in node.names} & modules
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & modules
    return found


def test_no_import_cycles_in_the_core():
    paths = {f"xpe_bench.{path.stem}": path for path in CORE.glob("*.py") if path.stem != "__init__"}
    graph = {name: _module_level_imports(path, set(paths)) - {name} for name, path in paths.items()}
    assert graph["xpe_bench.cli"] >= {"xpe_bench.cli_compare", "xpe_bench.cli_sweep"}  # the check sees edges
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from exc
    assert (
        order.index("xpe_bench.cli_app") < order.index("xpe_bench.cli_compare") < order.index("xpe_bench.cli")
    )


def test_the_plugin_api_resolves_every_name_lazily():
    import importlib
    import subprocess
    import sys

    import xpe_bench.api as api

    for name in api.__all__:
        value = getattr(api, name)
        assert value is getattr(importlib.import_module(api._HOMES[name]), name), name
    light = "from xpe_bench.api import MethodSpec, TaskSpec, BackboneSpec, Range, RoleSpec, hookimpl"
    check = f"import sys; {light}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # spec types come without torch
    try:
        api.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "it provides: BUILTIN_ROLES" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
