"""The plugin API: everything a third-party method, task or backbone needs, in one import.

    from xpe_bench.api import FitContext, Method, MethodSpec, Range, hookimpl

Names are resolved on first use (PEP 562), so importing this module, or a spec type from it, costs no torch
import: listing commands stay fast with any number of plugins installed. :data:`__all__` is the contract;
``docs/plugins.md`` documents every name and field.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    # hooks
    "hookimpl": "xpe_bench.hookspecs",
    # methods
    "MethodSpec": "xpe_bench.methods",
    "Method": "xpe_bench.methods",
    "FitContext": "xpe_bench.methods",
    "ProgressReporter": "xpe_bench.methods",
    "ParameterReport": "xpe_bench.methods",
    "parameter_report": "xpe_bench.methods",
    "Choice": "xpe_bench.methods",
    "Range": "xpe_bench.methods",
    "Check": "xpe_bench.methods",
    "RoleSpec": "xpe_bench.roles",
    "BUILTIN_ROLES": "xpe_bench.roles",
    # shared model parts (these import torch)
    "TorchMethod": "xpe_bench.modeling",
    "EncoderClassifier": "xpe_bench.modeling",
    "ClassificationHead": "xpe_bench.modeling",
    "PromptModule": "xpe_bench.modeling",
    # tasks and backbones
    "TaskSpec": "xpe_bench.tasks",
    "BackboneSpec": "xpe_bench.backbones",
    "Backbone": "xpe_bench.backbones",
    # budgets and errors
    "Budget": "xpe_bench.budgets",
    "UserInputError": "xpe_bench.errors",
    "RunFailed": "xpe_bench.errors",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"xpe_bench.api has no {name!r}; it provides: {', '.join(__all__)}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return __all__
