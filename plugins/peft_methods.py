"""The ``peft`` family: Hugging Face PEFT configurations as harness methods.

``lora``, ``ia3`` and ``peft-prompt`` wrap the backbone with PEFT (``get_peft_model`` on a private copy) and
put the XLM-R classification head on top (:class:`xpe_bench.modeling.EncoderClassifier`), so they train
through the shared loop under the same budgets, batches, model selection and storage precision as ``spt``.
This module only declares them (options, rules, roles): PEFT and torch are imported when a method is built
(:mod:`xpe_bench_plugins.peft_models`), so listing methods stays fast.

Roles: ``lora`` and ``ia3`` train their adapter weights in the role ``adapter``, which takes the budget's
``prompt_encoder`` rate when the budget names no ``adapter`` rate (a small trained network beside a frozen
backbone, as XPE's encoder is; the manifest records the fallback). ``peft-prompt`` trains its table in the
role ``prompt`` (no weight decay, carried over from a source stage), exactly as ``spt`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xpe_bench.api import BUILTIN_ROLES, Check, Choice, Method, MethodSpec, Range, RoleSpec, hookimpl

ADAPTER_ROLES = {
    "adapter": RoleSpec(
        fallback="prompt_encoder", description="PEFT adapter weights inside the frozen backbone"
    ),
    "head": BUILTIN_ROLES["head"],
}
PROMPT_ROLES = {role: BUILTIN_ROLES[role] for role in ("prompt", "head")}


def _module_names(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, str) and item and item.strip() == item for item in value)
    )


MODULE_NAMES = Check(_module_names, "a non-empty comma list of module names, e.g. query,value")


def _factory(kind: str) -> Any:
    def create(options: Mapping[str, Any]) -> Method:
        from xpe_bench_plugins.peft_models import PeftMethod

        return PeftMethod(options, kind=kind)

    return create


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            "lora",
            "PEFT LoRA adapters in the frozen backbone + head (low-rank updates of target_modules)",
            _factory("lora"),
            {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]},
            rules={
                "r": Range(1),
                "alpha": Range(1),
                "dropout": Range(0.0, 1.0, high_open=True),
                "target_modules": MODULE_NAMES,
            },
            help={
                "r": "rank of each low-rank update",
                "alpha": "scaling numerator: the update is scaled by alpha / r",
                "dropout": "dropout on the adapter's input",
                "target_modules": "names (suffixes) of the backbone's linear layers that get an adapter",
            },
            roles=ADAPTER_ROLES,
        ),
        MethodSpec(
            "ia3",
            "PEFT IA3: learned rescaling of target_modules' activations in the frozen backbone + head",
            _factory("ia3"),
            # PEFT's own defaults for BERT-style encoders (me5-small is one)
            {"target_modules": ["key", "value", "output.dense"], "feedforward_modules": ["output.dense"]},
            rules={
                "target_modules": MODULE_NAMES,
                "feedforward_modules": Check(
                    lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
                    "a comma list of module names (a subset of target_modules)",
                ),
            },
            help={
                "target_modules": "names (suffixes) of the backbone's layers whose activations are rescaled",
                "feedforward_modules": "those of target_modules that are feed-forward layers (rescaled at "
                "their input rather than their output)",
            },
            roles=ADAPTER_ROLES,
        ),
        MethodSpec(
            "peft-prompt",
            "PEFT prompt tuning (random init, virtual tokens read at position 0) + head, frozen backbone",
            _factory("prompt"),
            {"num_tokens": 20, "init": "random"},
            rules={"num_tokens": Range(1), "init": Choice(("random", "sample_vocab"))},
            help={
                "num_tokens": "virtual tokens prepended to the input",
                "init": "initial prompt: random, or embeddings of tokens sampled from the vocabulary",
            },
            roles=PROMPT_ROLES,
        ),
    ]
