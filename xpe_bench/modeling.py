"""Model building blocks shared by the torch methods, and :class:`TorchMethod`, their common base.

:class:`EncoderClassifier` = optional prompt module (prepended to the input embeddings) + encoder + the
XLM-R sequence-classification head. The head reads the encoder output at position 0 by default, which with
a prepended prompt is the *first virtual token*, exactly as the XPE authors' PEFT code did; ``read="cls"``
reads the real ``<s>`` token instead. Both are recorded in the manifest through the method options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from xpe_bench import training
from xpe_bench.lean_dropout import set_dropout_kernel
from xpe_bench.methods import FitContext, Method, ParameterReport, parameter_report

if TYPE_CHECKING:
    import datasets

    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget
    from xpe_bench.tasks import TaskSpec

HeadRead = Literal["first", "cls"]


class ClassificationHead(nn.Module):
    """XLM-R's ``RobertaClassificationHead``: dropout -> dense(d, d) -> tanh -> dropout -> out_proj(d, C)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class PromptModule(nn.Module):
    """Produces the ``[num_tokens, hidden]`` virtual-token embeddings prepended to every input."""

    num_tokens: int

    def forward(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class EncoderClassifier(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        num_labels: int,
        *,
        prompt: PromptModule | None = None,
        read: HeadRead = "first",
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.prompt = prompt
        self.read = read
        self.head = ClassificationHead(hidden_size, num_labels, head_dropout)

    @property
    def num_virtual_tokens(self) -> int:
        return self.prompt.num_tokens if self.prompt is not None else 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embeddings = self.encoder.get_input_embeddings()(input_ids)
        if self.prompt is not None:
            virtual = self.prompt().to(embeddings.dtype)
            batch = input_ids.shape[0]
            embeddings = torch.cat([virtual.unsqueeze(0).expand(batch, -1, -1), embeddings], dim=1)
            ones = attention_mask.new_ones(batch, virtual.shape[0])
            attention_mask = torch.cat([ones, attention_mask], dim=1)
        hidden = self.encoder(inputs_embeds=embeddings, attention_mask=attention_mask).last_hidden_state
        position = 0 if self.read == "first" else self.num_virtual_tokens
        return self.head(hidden[:, position].to(self.head.dense.weight.dtype))


def hidden_dropout(backbone: Backbone) -> float:
    return float(getattr(backbone.model.config, "hidden_dropout_prob", 0.1))


class TorchMethod(Method):
    """Base for methods that train an :class:`EncoderClassifier` with the shared loop.

    Subclasses implement :meth:`build` (return the model and its trainable parameters grouped by role).
    The trained state is every parameter with ``requires_grad``; frozen backbone weights are never saved.
    """

    model: EncoderClassifier
    groups: dict[str, list[nn.Parameter]]

    def setup(self, backbone: Backbone, task: TaskSpec) -> None:
        self.backbone = backbone
        self.task = task
        self.model, self.groups = self.build(backbone, task.num_labels)

    def build(
        self, backbone: Backbone, num_labels: int
    ) -> tuple[EncoderClassifier, dict[str, list[nn.Parameter]]]:
        raise NotImplementedError

    def apply_storage(self, budget: Budget) -> None:
        """Hold every frozen parameter in the budget's storage dtype and every trainable one in fp32.

        Parameter by parameter, so an adapter inside the encoder leaves the rest of the encoder in the
        budget's storage dtype, as a frozen encoder under a soft prompt is: every method gets the same
        precision treatment. Floating-point buffers (constants of the encoder) follow the storage dtype
        only when nothing in the encoder trains, as they always have."""
        storage = torch.bfloat16 if budget.frozen_backbone_dtype == "bf16" else torch.float32
        for parameter in self.model.parameters():
            parameter.data = parameter.data.to(torch.float32 if parameter.requires_grad else storage)
        encoder_trains = any(p.requires_grad for p in self.model.encoder.parameters())
        constants = torch.float32 if encoder_trains else storage
        for module in self.model.encoder.modules():
            for name, buffer in module.named_buffers(recurse=False):
                if buffer is not None and buffer.is_floating_point():
                    setattr(module, name, buffer.to(constants))

    def encode(self, data: datasets.Dataset, budget: Budget) -> training.Encoded:
        # The prompt's virtual tokens come on top of max_length, as in the paper (164 + 20).
        return training.encode(
            self.backbone.tokenizer,
            data["text"],
            data["label"],
            prefix=self.backbone.text_prefix,
            max_length=budget.max_length,
        )

    def fit(self, context: FitContext) -> dict[str, Any]:
        self.apply_storage(context.budget)
        set_dropout_kernel(self.model.encoder, context.budget.dropout_kernel)
        return training.fit(
            self.model,
            self.groups,
            self.encode(context.train, context.budget),
            self.encode(context.dev, context.budget),
            budget=context.budget,
            seed=context.seed,
            pad_id=self.backbone.tokenizer.pad_token_id,
            workdir=context.workdir,
            progress=context.progress,
            roles=context.roles,
        )

    def predict(self, data: datasets.Dataset, budget: Budget) -> np.ndarray:
        self.apply_storage(budget)
        return training.predict_scores(
            self.model,
            self.encode(data, budget),
            pad_id=self.backbone.tokenizer.pad_token_id,
            batch_size=budget.eval_batch_size,
            precision=budget.precision,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in training.trainable_state(self.model).items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        expected = {name for name, p in self.model.named_parameters() if p.requires_grad}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(
                f"state does not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        self.model.load_state_dict(dict(state), strict=False)

    def parameter_roles(self) -> dict[str, str]:
        role_of = {id(p): role for role, params in self.groups.items() for p in params}
        return {
            name: role_of[id(p)]
            for name, p in self.model.named_parameters()
            if p.requires_grad and id(p) in role_of
        }

    def parameter_report(self) -> ParameterReport:
        modules: dict[str, nn.Module] = {"encoder": self.model.encoder}
        if self.model.prompt is not None:
            modules["prompt"] = self.model.prompt
        modules["head"] = self.model.head
        return parameter_report(modules)
