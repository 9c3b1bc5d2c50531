"""Nearest-class-centroid on frozen sentence embeddings: the smallest useful xpe-bench method plugin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xpe_bench.api import FitContext, Method, MethodSpec, ParameterReport, Range, hookimpl, parameter_report


class NearestCentroid(Method):
    def setup(self, backbone, task) -> None:
        self.backbone = backbone
        self.num_labels = task.num_labels
        self.centroids = torch.zeros(task.num_labels, backbone.hidden_size)

    @torch.inference_mode()
    def _embed(self, texts: list[str], max_length: int) -> torch.Tensor:
        tokenizer, model = self.backbone.tokenizer, self.backbone.model
        chunks = []
        for start in range(0, len(texts), self.options["batch_size"]):
            batch = [self.backbone.text_prefix + t for t in texts[start : start + self.options["batch_size"]]]
            encoded = tokenizer(
                batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks)

    def fit(self, context: FitContext) -> dict[str, Any]:
        embeddings = self._embed(list(context.train["text"]), context.budget.max_length)
        labels = torch.tensor(context.train["label"])
        for label in range(self.num_labels):
            members = embeddings[labels == label]
            if len(members):
                self.centroids[label] = torch.nn.functional.normalize(members.mean(0), dim=-1)
        dev_scores = self.predict(context.dev, context.budget)
        dev_accuracy = float(np.mean(dev_scores.argmax(1) == np.asarray(context.dev["label"])))
        return {"trained": True, "train_examples": len(labels), "dev_accuracy": dev_accuracy}

    def predict(self, data, budget) -> np.ndarray:
        return (
            (self._embed(list(data["text"]), budget.max_length) @ self.centroids.T).numpy().astype(np.float32)
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids.contiguous()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.centroids = state["centroids"].clone()

    def parameter_report(self) -> ParameterReport:
        report = parameter_report({"encoder": self.backbone.model})
        modules = dict(report.modules) | {"centroids": (self.centroids.numel(), 0)}
        return ParameterReport(report.total + self.centroids.numel(), 0, modules)


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            name="centroid",
            description="example plugin: nearest class centroid of frozen mean-pooled embeddings",
            factory=NearestCentroid,
            defaults={"batch_size": 64},
            rules={"batch_size": Range(1)},
            help={"batch_size": "sentences per forward pass when embedding (speed and memory only)"},
        )
    ]
