"""The PEFT-wrapped encoder classifiers behind :mod:`xpe_bench_plugins.peft_methods`.

PEFT's ``get_peft_model`` changes the model it is given (LoRA and IA3 replace layers in place), and the
runner shares one loaded backbone between runs, so every method wraps a private deep copy. The wrapper is a
``PeftModelForFeatureExtraction``: for prompt tuning it prepends the virtual tokens to the input embeddings
and extends the attention mask itself, so the classifier reads position 0, the first virtual token, as
``spt`` does by default.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from xpe_bench.errors import UserInputError
from xpe_bench.modeling import EncoderClassifier, TorchMethod, hidden_dropout

if TYPE_CHECKING:
    from peft import PeftConfig

    from xpe_bench.backbones import Backbone


def peft_config(kind: str, options: Mapping[str, Any], hidden_size: int) -> PeftConfig:
    """The PEFT configuration for one of the family's methods and its (validated) options."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    task = TaskType.FEATURE_EXTRACTION
    if kind == "lora":
        return LoraConfig(
            task_type=task,
            r=options["r"],
            lora_alpha=options["alpha"],
            lora_dropout=options["dropout"],
            target_modules=list(options["target_modules"]),
        )
    if kind == "ia3":
        stray = sorted(set(options["feedforward_modules"]) - set(options["target_modules"]))
        if stray:
            raise UserInputError(
                f"option ia3.feedforward_modules: {stray} are not in target_modules "
                f"{options['target_modules']}; valid: a subset of target_modules"
            )
        return IA3Config(
            task_type=task,
            target_modules=list(options["target_modules"]),
            feedforward_modules=list(options["feedforward_modules"]),
        )
    init = {"random": PromptTuningInit.RANDOM, "sample_vocab": PromptTuningInit.SAMPLE_VOCAB}[options["init"]]
    return PromptTuningConfig(
        task_type=task,
        num_virtual_tokens=options["num_tokens"],
        token_dim=hidden_size,
        prompt_tuning_init=init,
    )


METHOD_NAMES = {"lora": "lora", "ia3": "ia3", "prompt": "peft-prompt"}


def check_target_modules(method: str, options: Mapping[str, Any], backbone: Backbone) -> None:
    """Every listed module name must match a module of the backbone, as PEFT matches them (the name or a
    dotted suffix of it): PEFT itself only fails when *none* matches, and would drop a misspelled one."""
    names = [name for name, _ in backbone.model.named_modules() if name]
    for option in ("target_modules", "feedforward_modules"):
        unmatched = [
            wanted
            for wanted in options.get(option, [])
            if not any(name == wanted or name.endswith("." + wanted) for name in names)
        ]
        if unmatched:
            linear = sorted(
                {
                    name.rsplit(".", 1)[-1]
                    for name, m in backbone.model.named_modules()
                    if isinstance(m, nn.Linear)
                }
            )
            raise UserInputError(
                f"option {method}.{option}: {unmatched} match no module of {backbone.name}; valid: module "
                f"names or dotted suffixes, e.g. {', '.join(linear)}"
            )


class PeftMethod(TorchMethod):
    """A PEFT configuration around a copy of the backbone, the XLM-R head on top, the shared loop."""

    def __init__(self, options: Mapping[str, Any], *, kind: str) -> None:
        super().__init__(options)
        self.kind = kind

    def build(
        self, backbone: Backbone, num_labels: int
    ) -> tuple[EncoderClassifier, dict[str, list[nn.Parameter]]]:
        from peft import get_peft_model

        check_target_modules(METHOD_NAMES[self.kind], self.options, backbone)
        config = peft_config(self.kind, self.options, backbone.hidden_size)
        encoder = copy.deepcopy(backbone.model)
        try:
            wrapped = get_peft_model(encoder, config)
        except ValueError as exc:  # e.g. a target module type PEFT cannot adapt
            message = " ".join(str(exc).split())
            raise UserInputError(
                f"method {METHOD_NAMES[self.kind]}: PEFT rejects the options on {backbone.name}: {message}"
            ) from exc
        model = EncoderClassifier(
            wrapped,
            backbone.hidden_size,
            num_labels,
            read="first",
            head_dropout=hidden_dropout(backbone),
        )
        trained = [p for p in wrapped.parameters() if p.requires_grad]
        role = "prompt" if self.kind == "prompt" else "adapter"
        return model, {role: trained, "head": list(model.head.parameters())}
