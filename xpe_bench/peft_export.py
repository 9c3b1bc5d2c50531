"""Export a trained soft prompt (SPT, XPE, DUAL) as a Hugging Face PEFT prompt-tuning adapter.

At inference every prompt of :mod:`xpe_bench_plugins.prompt_tuning` is a constant ``[num_tokens, hidden]``
table: SPT's is its parameter, XPE's is its encoder applied to its input table (dropout off), DUAL's is the
two concatenated. That effective table is written as PEFT's ``prompt_embeddings`` (through PEFT's own
``save_pretrained``, so ``PeftModel.from_pretrained(AutoModel.from_pretrained(base), folder)`` loads it as a
``PeftModelForFeatureExtraction``), and the classification head beside it as ``head.safetensors``: dense ->
tanh -> out_proj on the encoder output at the position named in its metadata (``read_position``: 0, the
first virtual token, or ``num_tokens``, the real ``<s>`` token). Under an fp32 budget the exported model's
logits equal the run's own scores up to floating-point summation order.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from xpe_bench.backbones import load_backbone
from xpe_bench.errors import UserInputError
from xpe_bench.modeling import PromptModule, TorchMethod
from xpe_bench.paths import cache_root
from xpe_bench.store import RunStore

if TYPE_CHECKING:
    from xpe_bench.plugins import Registry

HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class ExportedAdapter:
    folder: Path
    num_tokens: int
    read_position: int
    labels: list[str]


def export_prompt_adapter(run_dir: Path, out: Path, registry: Registry) -> ExportedAdapter:
    """Write ``run_dir``'s trained prompt as a PEFT adapter folder ``out`` (which must not hold files)."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"--out: {out} already exists and is not an empty folder; choose a new one")
    store = RunStore(run_dir)
    record = store.read_record()
    if record is None or not store.has_state:
        raise UserInputError(f"export-peft: {run_dir} is not a finished run directory (no trained state)")
    spec = registry.method(record.method.name)
    task = registry.task(record.task.name)
    backbone = load_backbone(record.backbone.name, registry.backbones, cache_root())
    if backbone.weights_sha256 != record.backbone.weights_sha256:
        raise UserInputError(
            f"export-peft: backbone {backbone.name!r} now has other weights than the run was trained on"
        )
    method = spec.create(record.method.options)
    method.setup(backbone, task)
    prompt = getattr(getattr(method, "model", None), "prompt", None)
    if not isinstance(method, TorchMethod) or not isinstance(prompt, PromptModule):
        raise UserInputError(
            f"export-peft: method {spec.name!r} has no soft prompt to export (use a run of spt, xpe or dual)"
        )
    if any(p.requires_grad for p in method.model.encoder.parameters()):
        raise UserInputError(
            f"export-peft: method {spec.name!r} trains its backbone; a prompt alone is not it"
        )
    method.load_state_dict(store.load_state())
    model = method.model
    model.eval()
    with torch.no_grad():
        table = prompt().detach().float().clone()  # eval mode: XPE's dropout is off, the table is constant
    read_position = 0 if model.read == "first" else prompt.num_tokens

    config = PromptTuningConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=prompt.num_tokens,
        token_dim=table.shape[1],
        prompt_tuning_init=PromptTuningInit.RANDOM,
        base_model_name_or_path=backbone.location or backbone.name,
    )
    base = copy.deepcopy(backbone.model).float()
    adapter = get_peft_model(base, config)
    with torch.no_grad():
        adapter.prompt_encoder["default"].embedding.weight.copy_(table)
    out.mkdir(parents=True, exist_ok=True)
    adapter.save_pretrained(str(out))
    head = {name: p.detach().float().contiguous() for name, p in model.head.named_parameters()}
    metadata = {
        "read_position": str(read_position),
        "labels": json.dumps(list(task.labels)),
        "text_prefix": backbone.text_prefix,
        "max_length": str(record.budget.max_length),
        "run_key": record.key,
        "layout": "dropout -> dense -> tanh -> dropout -> out_proj on last_hidden_state[:, read_position]",
    }
    save_file(head, str(out / HEAD_FILE), metadata=metadata)
    return ExportedAdapter(out, prompt.num_tokens, read_position, list(task.labels))
