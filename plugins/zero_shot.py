"""``zero-shot``: no labelled task data at all.

Two scorers, chosen by the backbone unless the ``scoring`` option says otherwise:

* ``embedding`` (encoders trained for sentence similarity, such as E5): embed each label's natural-language
  description (``label_descriptions`` in the task file) and every text with the backbone's pooling; the score
  of a label is the cosine similarity. Text features are cached like ``head-only``'s.
* ``cloze`` (backbones with a masked-language-model head, such as XLM-R): append
  ``template`` (default ``" Topic: <mask>."``) to the text and score each label by the log-probability of
  its verbalizer's first sub-word at the mask. The verbalizer is the first word of the label description.

``auto`` picks ``cloze`` when the backbone's folder or hub id loads with an MLM head, else ``embedding``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xpe_bench.errors import UserInputError
from xpe_bench.hookspecs import hookimpl
from xpe_bench.methods import Check, Choice, FitContext, Method, MethodSpec, ParameterReport, parameter_report
from xpe_bench.paths import cache_root

if TYPE_CHECKING:  # torch and transformers are imported where the method runs, not when it is listed
    import datasets
    import torch

    from xpe_bench.backbones import Backbone
    from xpe_bench.budgets import Budget
    from xpe_bench.tasks import TaskSpec

SCORERS = ("auto", "embedding", "cloze")


def _masked_lm(backbone: Backbone) -> torch.nn.Module | None:
    """The backbone's MLM head model, or ``None`` when its checkpoint has none (e.g. E5)."""
    if not backbone.location:  # an architecture-only backbone: no checkpoint to look in
        return None
    from transformers import AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(backbone.location, output_loading_info=True)
    except (OSError, ValueError):
        return None
    head_missing = any(key.startswith(("lm_head", "cls.")) for key in info["missing_keys"])
    return None if head_missing else model.eval().requires_grad_(False)


class ZeroShot(Method):
    def setup(self, backbone: Backbone, task: TaskSpec) -> None:
        scoring = self.options["scoring"]
        self.backbone = backbone
        self.task = task
        for parameter in backbone.model.parameters():
            parameter.requires_grad_(False)
        self.mlm = _masked_lm(backbone) if scoring in ("auto", "cloze") else None
        if scoring == "cloze" and self.mlm is None:
            raise UserInputError(f"option scoring=cloze: backbone {backbone.name!r} has no masked-LM head")
        self.scoring = "cloze" if self.mlm is not None else "embedding"

    def fit(self, context: FitContext) -> dict[str, Any]:
        return {"trained": False, "scoring": self.scoring}

    def predict(self, data: datasets.Dataset, budget: Budget) -> np.ndarray:
        if self.scoring == "cloze":
            import torch

            with torch.inference_mode():
                return self._cloze(list(data["text"]), budget)
        return self._embedding(list(data["text"]), budget)

    def _embedding(self, texts: list[str], budget: Budget) -> np.ndarray:
        from xpe_bench.features import cached_features, compute_features

        pooling = "first" if self.backbone.pooling == "cls" else "mean"
        text_vectors = cached_features(self.backbone, texts, cache_root(), pooling=pooling, budget=budget)
        label_vectors = compute_features(
            self.backbone, list(self.task.label_descriptions), pooling=pooling, budget=budget
        )
        text_vectors /= np.linalg.norm(text_vectors, axis=1, keepdims=True).clip(min=1e-12)
        label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True).clip(min=1e-12)
        return (text_vectors @ label_vectors.T).astype(np.float32)

    def _cloze(self, texts: list[str], budget: Budget) -> np.ndarray:
        import torch

        from xpe_bench.training import Encoded, collate, inference_batches

        assert self.mlm is not None
        tokenizer = self.backbone.tokenizer
        verbalizers = []
        for description in self.task.label_descriptions:
            word = description.split(":")[0].split()[0]
            verbalizers.append(tokenizer(" " + word, add_special_tokens=False)["input_ids"][0])
        template = self.options["template"].replace("<mask>", tokenizer.mask_token)
        # Truncate the text, never the template: the mask must survive.
        template_ids = tokenizer(template, add_special_tokens=False)["input_ids"]
        text_ids = tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=budget.max_length - 2
        )
        rows = [
            [tokenizer.cls_token_id, *ids, *template_ids, tokenizer.sep_token_id]
            for ids in text_ids["input_ids"]
        ]
        encoded = Encoded(
            ids=[np.asarray(r, dtype=np.int64) for r in rows], labels=np.zeros(len(rows), dtype=np.int64)
        )
        out = np.empty((len(texts), len(verbalizers)), dtype=np.float32)
        for batch in inference_batches(encoded.lengths, budget.eval_batch_size):
            input_ids, mask, _ = collate(encoded, batch, tokenizer.pad_token_id)
            logits = self.mlm(input_ids=input_ids, attention_mask=mask).logits
            at_mask = input_ids == tokenizer.mask_token_id
            if not torch.equal(at_mask.sum(1), torch.ones(len(batch), dtype=torch.long)):
                raise ValueError("every cloze input needs exactly one mask token; check the template")
            log_probs = logits[at_mask].log_softmax(-1)[:, verbalizers]
            out[batch] = log_probs.float().numpy()
        return out

    def parameter_report(self) -> ParameterReport:
        modules: dict[str, torch.nn.Module] = {"encoder": self.backbone.model}
        if self.mlm is not None:
            modules["mlm"] = self.mlm
        return parameter_report(modules)


def _create(options: Mapping[str, Any]) -> ZeroShot:
    return ZeroShot(options)


@hookimpl
def xpe_bench_methods() -> list[MethodSpec]:
    defaults: dict[str, Any] = {"scoring": "auto", "template": " Topic: <mask>."}
    return [
        MethodSpec(
            "zero-shot",
            "no task data: label-description embedding similarity, or cloze scoring with an MLM head",
            _create,
            defaults,
            trains=False,
            rules={
                "scoring": Choice(SCORERS),
                # The label is scored at the mask: without one there is nothing to score.
                "template": Check(lambda text: text.count("<mask>") == 1, "a text with exactly one <mask>"),
            },
            help={
                "scoring": "embedding = similarity to each label's description; cloze = the MLM head's score "
                "of each label at the mask; auto = cloze when the backbone has an MLM head, else embedding",
                "template": "text appended to the input for cloze scoring; the label is scored at <mask>",
            },
        )
    ]
