"""Shared fixtures: a session cache dir (reused across tests) and the local data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xpe_bench.paths import resolve_data_root


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
    if root is None:
        pytest.fail("the tests need the shared data mirror (../shared/data) or $XPE_BENCH_DATA")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test caches into the session cache, never into the user's ~/.cache."""
    monkeypatch.setenv("XPE_BENCH_CACHE", str(cache_dir))


@pytest.fixture(scope="session")
def registry():
    from xpe_bench.plugins import load_registry

    return load_registry()
