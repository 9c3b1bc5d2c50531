"""Plugin discovery: entry points of group ``xpe_bench``, loaded into one pluggy manager.

A plugin that fails to import is recorded with its reason (shown by ``xpe-bench plugins``) instead of breaking
every command. ``$XPE_BENCH_DISABLE_PLUGINS`` (comma list of entry-point names) skips plugins by name.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from xpe_bench import hookspecs
from xpe_bench.errors import UserInputError

if TYPE_CHECKING:
    from xpe_bench.backbones import BackboneSpec
    from xpe_bench.methods import MethodSpec
    from xpe_bench.tasks import TaskSpec

ENTRY_POINT_GROUP = "xpe_bench"
DISABLE_ENV = "XPE_BENCH_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    status: str
    """``loaded``, ``disabled`` or ``failed``."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Registry:
    """Everything the loaded plugins provide, by name."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)

    def _collect(self, hook_results: Iterable[list[Any]], kind: str) -> dict[str, Any]:
        items: dict[str, Any] = {}
        for batch in hook_results:
            for item in batch:
                if item.name in items:
                    raise RuntimeError(f"two plugins register a {kind} named {item.name!r}")
                items[item.name] = item
        return dict(sorted(items.items()))

    @cached_property
    def methods(self) -> dict[str, MethodSpec]:
        return self._collect(self.manager.hook.xpe_bench_methods(), "method")

    @cached_property
    def tasks(self) -> dict[str, TaskSpec]:
        return self._collect(self.manager.hook.xpe_bench_tasks(), "task")

    @cached_property
    def backbones(self) -> dict[str, BackboneSpec]:
        return self._collect(self.manager.hook.xpe_bench_backbones(), "backbone")

    def method(self, name: str) -> MethodSpec:
        if name not in self.methods:
            raise UserInputError(f"--method: unknown method {name!r}; available: {', '.join(self.methods)}")
        return self.methods[name]

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise UserInputError(f"--task: unknown task {name!r}; available: {', '.join(self.tasks)}")
        return self.tasks[name]


def disabled_names() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def load_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """Load every ``xpe_bench`` entry point (plus ``extra_plugins``, for tests) into a registry."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    disabled = disabled_names()
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        dist = entry_point.dist
        base = {
            "name": entry_point.name,
            "module": entry_point.value,
            "distribution": dist.name if dist else None,
            "version": dist.version if dist else None,
        }
        if entry_point.name in disabled:
            registry.plugins.append(PluginInfo(**base, status="disabled"))
            continue
        if manager.has_plugin(entry_point.name):
            continue  # the same entry point seen twice on sys.path
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as exc:  # a broken third-party plugin must not take the harness down
            reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            registry.plugins.append(PluginInfo(**base, status="failed", error=reason))
            continue
        registry.plugins.append(PluginInfo(**base, status="loaded"))
    for plugin in extra_plugins:
        manager.register(plugin)
    return registry
