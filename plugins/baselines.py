"""The baselines and controls every prompt method is compared with.

* ``full-ft``   - full-model fine-tuning (backbone + head): the paper's strongest baseline.
* ``head-only`` - frozen backbone, only the classification head trains: the control that tells whether a
  prompt adds anything beyond a trained head. Its backbone features are computed once per (backbone, texts)
  and cached (:mod:`xpe_bench.features`), then the head trains with the very same loop, budget, batch order
  and model selection as every other method.

Registered by :mod:`xpe_bench_plugins.baselines_specs`, which imports this module (and with it torch) only
when a run creates one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from xpe_bench import training
from xpe_bench.features import cached_features
from xpe_bench.methods import FitContext, Method, ParameterReport, parameter_report
from xpe_bench.modeling import ClassificationHead, EncoderClassifier, TorchMethod, hidden_dropout
from xpe_bench.paths import cache_root

if TYPE_CHECKING:
    import datasets

    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget
    from xpe_bench.tasks import TaskSpec


class FullFineTuning(TorchMethod):
    def build(
        self, backbone: Backbone, num_labels: int
    ) -> tuple[EncoderClassifier, dict[str, list[nn.Parameter]]]:
        for parameter in backbone.model.parameters():
            parameter.requires_grad_(True)
        if self.options["freeze_embeddings"]:
            for parameter in backbone.model.get_input_embeddings().parameters():
                parameter.requires_grad_(False)
        model = EncoderClassifier(
            backbone.model,
            backbone.hidden_size,
            num_labels,
            read="first",
            head_dropout=hidden_dropout(backbone),
        )
        backbone_params = [p for p in backbone.model.parameters() if p.requires_grad]
        return model, {"backbone": backbone_params, "head": list(model.head.parameters())}


class FeatureHead(nn.Module):
    """The classification head over a table of precomputed features; "token ids" are row numbers."""

    def __init__(self, hidden: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.head = ClassificationHead(hidden, num_labels, dropout)
        self.register_buffer("table", torch.zeros(0, hidden), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.table[input_ids[:, 0]])


def _rows(offset: int, labels: list[int]) -> training.Encoded:
    return training.Encoded(
        ids=[np.array([offset + i], dtype=np.int64) for i in range(len(labels))],
        labels=np.asarray(labels, dtype=np.int64),
    )


class HeadOnly(Method):
    def setup(self, backbone: Backbone, task: TaskSpec) -> None:
        self.backbone = backbone
        for parameter in backbone.model.parameters():
            parameter.requires_grad_(False)
        self.model = FeatureHead(backbone.hidden_size, task.num_labels, hidden_dropout(backbone))
        self.cache = cache_root()

    def _features(self, data: datasets.Dataset, budget: Budget) -> torch.Tensor:
        features = cached_features(
            self.backbone, data["text"], self.cache, pooling=self.options["pooling"], budget=budget
        )
        return torch.from_numpy(features)

    def fit(self, context: FitContext) -> dict[str, Any]:
        train = self._features(context.train, context.budget)
        dev = self._features(context.dev, context.budget)
        self.model.table = torch.cat([train, dev])
        return training.fit(
            self.model,
            {"head": list(self.model.head.parameters())},
            _rows(0, context.train["label"]),
            _rows(len(train), context.dev["label"]),
            budget=context.budget,
            seed=context.seed,
            pad_id=0,
            workdir=Path(context.workdir),
            progress=context.progress,
            roles=context.roles,
        )

    def predict(self, data: datasets.Dataset, budget: Budget) -> np.ndarray:
        self.model.table = self._features(data, budget)
        return training.predict_scores(
            self.model, _rows(0, data["label"]), pad_id=0, batch_size=budget.eval_batch_size, precision="fp32"
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in training.trainable_state(self.model).items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(dict(state), strict=True)

    def parameter_roles(self) -> dict[str, str]:
        return {name: "head" for name, p in self.model.named_parameters() if p.requires_grad}

    def parameter_report(self) -> ParameterReport:
        return parameter_report({"encoder": self.backbone.model, "head": self.model.head})
