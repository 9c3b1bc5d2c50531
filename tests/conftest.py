"""Shared fixtures: a session cache dir (reused across tests), the mock task, and the local data root.

Tests that need the real data mirror are marked ``data`` (or use the ``data_root`` fixture, which marks them
too); without a data root they are skipped with the reason, so a fresh clone runs everything else. The mock
task (``tests/fixtures/mock_task``: three made-up languages, its own language table and data) serves the
tests that need *some* task.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from xpe_bench.paths import DATA_ENV, resolve_data_root

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MOCK_SITE = FIXTURES / "mock_site"
"""A folder holding the mock task's plugin module and a dist-info advertising it (entry point group
``xpe_bench``): on ``sys.path`` (or ``$PYTHONPATH``) it is an installed task package."""
MOCK_TASK_FILE = FIXTURES / "mock_task" / "mock.toml"
NO_DATA_REASON = "needs the data mirror (../shared/data beside the checkout, $XPE_BENCH_DATA or --data-dir)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_data = [item for item in items if "data" in item.keywords or "data_root" in item.fixturenames]
    if needs_data and resolve_data_root() is None:
        for item in needs_data:
            item.add_marker(pytest.mark.skip(reason=NO_DATA_REASON))
    for item in needs_data:
        item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$XPE_BENCH_CACHE when set (so the converted me5-small is reused), else a fresh temporary folder."""
    configured = os.environ.get("XPE_BENCH_CACHE")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = resolve_data_root()
    assert root is not None  # tests using this fixture are skipped without a data root (above)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test caches into the session cache, never into the user's ~/.cache."""
    monkeypatch.setenv("XPE_BENCH_CACHE", str(cache_dir))


def _mock_plugin() -> object:
    """The mock task's plugin module, imported without putting its folder on ``sys.path``."""
    name = "xpe_bench_mock_task"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, MOCK_SITE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture(scope="session")
def registry():
    """Every installed plugin plus the mock task."""
    from xpe_bench.plugins import load_registry

    return load_registry(extra_plugins=[_mock_plugin()])


@pytest.fixture
def mock_task(monkeypatch: pytest.MonkeyPatch) -> str:
    """The mock task installed for this test (in-process CLI commands find it through its entry point),
    read from its own ``data_root``: ``$XPE_BENCH_DATA``, which would override it, is unset here."""
    monkeypatch.syspath_prepend(str(MOCK_SITE))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return "mock"


@pytest.fixture(scope="session")
def mock_spec():
    """The mock task's :class:`TaskSpec`, read from its task file."""
    from xpe_bench.tasks import TaskSpec

    return TaskSpec.from_toml(MOCK_TASK_FILE)


@pytest.fixture
def mock_data(tmp_path: Path) -> Path:
    """A writable copy of the mock task's data (``<root>/mock/<lang>/<split>.tsv``), to break files in."""
    import shutil

    root = tmp_path / "mock-data"
    shutil.copytree(MOCK_TASK_FILE.parent / "data", root)
    return root
