"""Plugin discovery: entry points of group ``xpe_bench``, loaded into one pluggy manager.

A broken plugin is recorded with its reason (shown by ``xpe-bench plugins``) instead of breaking every
command, whether it breaks when its module is imported, when it is registered (a misspelled or unmarked hook
name), or when one of its hooks is called (the hook raises, or returns something that is not a list of valid
specs with fresh names). A plugin that fails contributes nothing at all; every other plugin works as before.

Hooks are called once per registry, one plugin at a time, the first time anything asks for methods, tasks,
backbones or the plugin list. The built-in plugins (distribution ``xpe-bench``) come first, so a third-party
plugin cannot take a built-in name: it fails instead. ``$XPE_BENCH_DISABLE_PLUGINS`` (comma list of
entry-point names) skips plugins by name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import metadata
from pathlib import Path
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
BUILTIN_DISTRIBUTION = "xpe-bench"
HOOK_PREFIX = "xpe_bench_"
KINDS = {"methods": "method", "tasks": "task", "backbones": "backbone"}
"""What a plugin can provide (hook ``xpe_bench_<kind>``), with the singular used in messages."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    status: str
    """``loaded``, ``disabled`` or ``failed``."""
    error: str | None = None
    path: str | None = None
    """The file the plugin was loaded from (its module), where known."""
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Kind (``methods``, ``tasks``, ``backbones``) -> the names this plugin registered."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()} | {
            "provides": {kind: list(names) for kind, names in self.provides.items()}
        }


class PluginFault(Exception):
    """Why a plugin cannot be used; its text is what ``xpe-bench plugins`` shows."""


@dataclass
class Registry:
    """Everything the loaded plugins provide, by name."""

    manager: pluggy.PluginManager
    loaded: list[PluginInfo] = field(default_factory=list)
    """Every plugin as discovery left it (imported, disabled or failed to import), in calling order."""

    @cached_property
    def _contents(self) -> tuple[list[PluginInfo], dict[str, dict[str, Any]]]:
        """Call each loaded plugin's hooks once; a plugin whose hooks fault fails and contributes nothing."""
        items: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        owner: dict[tuple[str, str], str] = {}
        plugins = []
        for info in self.loaded:
            if info.status != "loaded":
                plugins.append(info)
                continue
            try:
                provided = self._call_hooks(info)
                for kind, specs in provided.items():
                    for spec in specs:
                        earlier = owner.get((kind, spec.name))
                        what = f"{KINDS[kind]} {spec.name!r}"
                        if earlier == info.name:
                            raise PluginFault(f"hook {HOOK_PREFIX}{kind} returns {what} twice")
                        if earlier is not None:
                            raise PluginFault(f"{what} is already provided by plugin {earlier!r}")
                        owner[kind, spec.name] = info.name
            except PluginFault as fault:
                for key in [key for key, name in owner.items() if name == info.name]:
                    del owner[key]
                plugins.append(replace(info, status="failed", error=str(fault)))
                continue
            for kind, specs in provided.items():
                items[kind].update((spec.name, spec) for spec in specs)
            names = {kind: tuple(spec.name for spec in specs) for kind, specs in provided.items() if specs}
            plugins.append(replace(info, provides=names))
        return plugins, {kind: dict(sorted(found.items())) for kind, found in items.items()}

    def _call_hooks(self, plugin: PluginInfo) -> dict[str, list[Any]]:
        from xpe_bench.backbones import BackboneSpec
        from xpe_bench.methods import MethodSpec
        from xpe_bench.tasks import TaskSpec

        types = {"methods": MethodSpec, "tasks": TaskSpec, "backbones": BackboneSpec}
        provided: dict[str, list[Any]] = {}
        for kind, spec_type in types.items():
            hook_name = HOOK_PREFIX + kind
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin.name:
                    continue
                try:
                    result = impl.function()
                except Exception as exc:  # a plugin's bug must not take the other plugins down
                    reason = describe_exception(exc, plugin.path)
                    raise PluginFault(f"hook {hook_name} raised {reason}") from exc
                provided[kind] = _checked(result, spec_type, hook_name)
        return provided

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin with its final status: hook-time faults included, and what each one provides."""
        return self._contents[0]

    @property
    def failed(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.status == "failed"]

    @property
    def methods(self) -> dict[str, MethodSpec]:
        return self._contents[1]["methods"]

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self._contents[1]["tasks"]

    @property
    def backbones(self) -> dict[str, BackboneSpec]:
        return self._contents[1]["backbones"]

    def method(self, name: str) -> MethodSpec:
        if name not in self.methods:
            available = ", ".join(self.methods)
            raise UserInputError(
                f"--method: unknown method {name!r}; available: {available}{self._failed_note()}"
            )
        return self.methods[name]

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            available = ", ".join(self.tasks)
            raise UserInputError(
                f"--task: unknown task {name!r}; available: {available}{self._failed_note()}"
            )
        return self.tasks[name]

    def _failed_note(self) -> str:
        """Where a missing name may have gone: the plugins that failed (``xpe-bench plugins`` says why)."""
        failed = [info.name for info in self.failed]
        return f" (failed plugins: {', '.join(failed)}; see `xpe-bench plugins`)" if failed else ""


def _checked(result: object, spec_type: type, hook_name: str) -> list[Any]:
    """The specs a hook returned, or the fault that makes its plugin unusable."""
    if not isinstance(result, list | tuple):
        raise PluginFault(f"hook {hook_name} must return a list of {spec_type.__name__}, got {_kind(result)}")
    for item in result:
        if not isinstance(item, spec_type):
            raise PluginFault(f"hook {hook_name} returned {_kind(item)}, not a {spec_type.__name__}")
        if not isinstance(item.name, str) or not item.name.strip():
            raise PluginFault(f"hook {hook_name} returned a {spec_type.__name__} named {item.name!r}")
    return list(result)


def _kind(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def describe_exception(exc: BaseException, plugin_file: str | None = None) -> str:
    """``Type: message (at file:line)``: the innermost frame in ``plugin_file`` if the traceback passes
    through it, else the innermost frame outside the import machinery (and outside this module)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not _machinery(frame.filename)]
    own = [frame for frame in frames if plugin_file and Path(frame.filename) == Path(plugin_file)]
    at = (own or frames)[-1:]
    return f"{text} (at {at[0].filename}:{at[0].lineno})" if at else text


_MACHINERY = (Path(__file__).resolve(), Path(importlib.__file__).resolve().parent)
"""This module and the ``importlib`` package: their frames say nothing about what went wrong in a plugin."""


def _machinery(filename: str) -> bool:
    path = Path(filename).resolve()
    return filename.startswith("<") or any(path == where or where in path.parents for where in _MACHINERY)


def hook_name_faults(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """Misspelled, unknown or unmarked hooks of ``plugin``: each would otherwise register nothing, silently.

    Every routine named ``xpe_bench_*``, and every routine marked ``@hookimpl``, must be a known hook marked
    ``@hookimpl`` (what pluggy's ``check_pending`` checks for marked ones, here per plugin).
    """
    known = sorted(name for name in dir(hookspecs) if name.startswith(HOOK_PREFIX))
    faults = []
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:  # a property that raises is none of our business
            continue
        if not inspect.isroutine(value):
            continue
        opts = manager.parse_hookimpl_opts(plugin, attr)
        marked = opts is not None
        if not marked and not attr.startswith(HOOK_PREFIX):
            continue
        specname = (opts or {}).get("specname") or attr
        if specname in known:
            if not marked:
                faults.append(f"{attr} is not marked with @hookimpl, so it registers nothing")
            continue
        close = difflib.get_close_matches(specname, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"hooks: {', '.join(known)}"
        faults.append(f"unknown hook {specname!r} ({hint})")
    return faults


def disabled_names() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin`` under ``name`` if its hook names are sound; raise :class:`PluginFault` if not."""
    faults = hook_name_faults(manager, plugin)
    if faults:
        raise PluginFault("; ".join(faults))
    try:
        manager.register(plugin, name=name)
    except Exception as exc:  # pluggy's own validation, e.g. a hook taking arguments its spec does not have
        raise PluginFault(describe_exception(exc)) from exc


def _source_file(plugin: object) -> str | None:
    try:
        holder = plugin if inspect.ismodule(plugin) or inspect.isclass(plugin) else type(plugin)
        return inspect.getsourcefile(holder)  # type: ignore[arg-type]
    except TypeError:  # built-in or dynamically made: no file
        return None


def load_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """Load every ``xpe_bench`` entry point (plus ``extra_plugins``, the test seam) into a registry.

    Importing a plugin module happens here; its hooks are called later, the first time the registry is asked
    for what they provide. ``extra_plugins`` are modules or objects with ``@hookimpl`` functions, registered
    after the entry points and reported like them (name: the module's ``__name__``, or the object's class).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    disabled = disabled_names()

    def order(entry_point: metadata.EntryPoint) -> tuple[bool, str]:
        dist = entry_point.dist
        return (dist is None or dist.name != BUILTIN_DISTRIBUTION, entry_point.name)

    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=order):
        dist = entry_point.dist
        base = {
            "name": entry_point.name,
            "module": entry_point.value,
            "distribution": dist.name if dist else None,
            "version": dist.version if dist else None,
        }
        if entry_point.name in disabled:
            registry.loaded.append(PluginInfo(**base, status="disabled"))
            continue
        if manager.has_plugin(entry_point.name) or entry_point.name in {p.name for p in registry.loaded}:
            continue  # the same entry point seen twice on sys.path
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken third-party plugin must not take the harness down
            registry.loaded.append(PluginInfo(**base, status="failed", error=describe_exception(exc)))
            continue
        _add(registry, plugin, base)
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        _add(registry, plugin, {"name": name, "module": name, "distribution": None, "version": None})
    return registry


def _add(registry: Registry, plugin: object, base: dict[str, Any]) -> None:
    path = _source_file(plugin)
    try:
        _register(registry.manager, plugin, base["name"])
    except PluginFault as fault:
        registry.loaded.append(PluginInfo(**base, status="failed", error=str(fault), path=path))
        return
    registry.loaded.append(PluginInfo(**base, status="loaded", path=path))
