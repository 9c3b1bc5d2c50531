"""Registers the named backbones: the embedded ``me5-small`` (default) and ``tiny-random`` (tests)."""

from __future__ import annotations

from xpe_bench.backbones import BackboneSpec, builtin_backbone_specs
from xpe_bench.hookspecs import hookimpl


@hookimpl
def xpe_bench_backbones() -> list[BackboneSpec]:
    return builtin_backbone_specs()
