"""Registers the soft-prompt methods of the XPE paper (``spt``, ``xpe``, ``dual``, ``dual-30``, ``dual-70``).

Only names, options and rules live here, so listing methods imports no torch; the model is
:mod:`xpe_bench_plugins.prompt_tuning`, imported when a run creates a method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xpe_bench.hookspecs import hookimpl
from xpe_bench.methods import Choice, MethodSpec, Range
from xpe_bench.roles import BUILTIN_ROLES

if TYPE_CHECKING:
    from xpe_bench_plugins.prompt_tuning import PromptTuning

TARGET_STAGE = {"xpe_dropout": 0.0}
"""The paper trains the XPE encoder with dropout 0.1 on the sources and 0.0 on a target language."""


def _options(ratio: float) -> dict[str, Any]:
    return {
        "num_tokens": 20,
        "ratio": ratio,
        "read": "first",
        "xpe_dropout": 0.1,
        # The released runs most likely trained the XPE input table at the encoder's rate (5e-5); the authors'
        # current code uses the prompt rate (5e-3). Set to "prompt" for the latter.
        "xpe_table_role": "prompt_encoder",
    }


RULES = {
    "num_tokens": Range(1),
    "ratio": Range(0.0, 1.0),
    "read": Choice(("first", "cls")),  # first: position 0, as the paper
    "xpe_dropout": Range(0.0, 1.0, high_open=True),
    "xpe_table_role": Choice(("prompt", "prompt_encoder")),
}


HELP = {
    "num_tokens": "virtual tokens prepended to the input (the paper's 20)",
    "ratio": "share of the tokens that come from the XPE encoder: 0 = SPT, 1 = XPE, between = DUAL",
    "read": "where the head reads: first = the first virtual token (as the paper), cls = the real <s> token",
    "xpe_dropout": "dropout inside the XPE encoder (the paper: 0.1 on the sources, 0.0 on a target language)",
    "xpe_table_role": "the role (so the learning rate) of the XPE input table: prompt_encoder as in the "
    "released runs, prompt as in the authors' current code",
}


def _create(options: Mapping[str, Any]) -> PromptTuning:
    from xpe_bench_plugins.prompt_tuning import PromptTuning

    return PromptTuning(options)


ROLES = {role: BUILTIN_ROLES[role] for role in ("prompt", "prompt_encoder", "head")}
"""The prompt (no weight decay) and its encoder come from the source stage under ``--init-parts auto``."""


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    presets = [
        ("spt", 0.0, "standard soft prompt (20 virtual tokens) + head, frozen backbone"),
        ("xpe", 1.0, "Cross-Prompt Encoder: prompt table through a token-wise MLP, frozen backbone"),
        ("dual", 0.5, "dual soft prompt: SPT tokens then XPE tokens, encoder ratio `ratio`"),
        ("dual-30", 0.3, "DUAL with encoder ratio 0.3 (14 SPT + 6 XPE tokens)"),
        ("dual-70", 0.7, "DUAL with encoder ratio 0.7 (6 SPT + 14 XPE tokens)"),
    ]
    return [
        MethodSpec(
            name,
            description,
            _create,
            _options(ratio),
            target_stage=TARGET_STAGE,
            rules=RULES,
            roles=ROLES,
            help=HELP,
        )
        for name, ratio, description in presets
    ]
