"""Registers the baselines ``full-ft`` and ``head-only`` (implemented in :mod:`xpe_bench_plugins.baselines`).

Only names, options and rules live here, so listing methods imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xpe_bench.hookspecs import hookimpl
from xpe_bench.methods import Choice, MethodSpec
from xpe_bench.roles import BUILTIN_ROLES

if TYPE_CHECKING:
    from xpe_bench_plugins.baselines import FullFineTuning, HeadOnly


def _full_ft(options: Mapping[str, Any]) -> FullFineTuning:
    from xpe_bench_plugins.baselines import FullFineTuning

    return FullFineTuning(options)


def _head_only(options: Mapping[str, Any]) -> HeadOnly:
    from xpe_bench_plugins.baselines import HeadOnly

    return HeadOnly(options)


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "full-ft",
            "full-model fine-tuning: backbone and head train (the paper's strongest baseline)",
            _full_ft,
            {"freeze_embeddings": False},
            help={"freeze_embeddings": "keep the word embeddings frozen (the rest of the backbone trains)"},
            roles={role: BUILTIN_ROLES[role] for role in ("backbone", "head")},
        ),
        MethodSpec(
            "head-only",
            "control: frozen backbone, only the classification head trains (features cached once)",
            _head_only,
            # "mean" = the backbone's pooled sentence vector (the stronger control for E5);
            # "first" = the <s> state, the same position a prompt-free XLM-R head reads.
            {"pooling": "mean"},
            rules={"pooling": Choice(("mean", "first"))},
            help={"pooling": "sentence vector: mean = the backbone's pooled vector, first = the <s> state"},
            roles={"head": BUILTIN_ROLES["head"]},
        ),
    ]
