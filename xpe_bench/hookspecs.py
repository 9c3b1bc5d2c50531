"""The pluggy hook specifications: the only way methods, tasks and backbones enter the harness.

A plugin is any module (or object) that implements some of these hooks with ``@hookimpl`` and is advertised
under the entry-point group ``xpe_bench``. The built-in methods, tasks and backbones register through exactly
this path; see ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from xpe_bench.backbones import BackboneSpec
    from xpe_bench.methods import MethodSpec
    from xpe_bench.tasks import TaskSpec

PROJECT = "xpe_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def xpe_bench_methods() -> list[MethodSpec]:  # type: ignore[empty-body]
    """Return the methods this plugin provides."""


@hookspec
def xpe_bench_tasks() -> list[TaskSpec]:  # type: ignore[empty-body]
    """Return the tasks this plugin provides."""


@hookspec
def xpe_bench_backbones() -> list[BackboneSpec]:  # type: ignore[empty-body]
    """Return the named backbones this plugin provides (any hub id or folder works without one)."""
