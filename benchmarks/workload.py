"""The workload both speed benchmarks measure, and the two training stacks that run it.

* *ours*: xpe-bench's own code path - ``spec.create`` -> ``method.setup`` -> ``method.fit(FitContext(...))``
  with a budget derived from the ``paper`` preset (Adafactor, cosine with restarts, clipping, batch 32, max
  length 164 + 20 virtual tokens), ``max_steps=N`` and no evaluation during training.
* *reference*: the stack the XPE authors used - PEFT prompt tuning (SPT) / PEFT prompt encoder with an MLP
  (XPE) around a small ``PreTrainedModel`` (``BertModel`` without pooler + the XLM-R classification head on
  position 0), trained by the Hugging Face ``Trainer`` with ``DataCollatorWithPadding`` and length-grouped
  sampling. PEFT and accelerate are benchmark-only extras (``benchmarks/requirements.txt``); they are imported
  lazily so that ``ours`` runs without them.

Both stacks run the very same ``BertModel`` (as loaded by ``load_backbone``: same weights, SDPA attention,
no pooler). A forward pre-hook on it (:class:`ShapeRecorder`) records
every call's batch shape (prompt included) and real-token count, so throughput, padding and FLOP counts come
from what each stack actually computed, not from assumptions about its batching.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xpe_bench import training
from xpe_bench.budgets import Budget, load_budget
from xpe_bench.methods import FitContext
from xpe_bench.tasks import TaskData, TaskSpec

if TYPE_CHECKING:
    import datasets

    from xpe_bench.backbones import Backbone
    from xpe_bench.modeling import TorchMethod
    from xpe_bench.plugins import Registry

TASK = "sib200"
SOURCES = "joshi5"
BACKBONE = "me5-small"
BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
MAX_LENGTH = 164
NUM_VIRTUAL_TOKENS = 20
SEED = 0
METHODS = ("spt", "xpe")


@dataclass(frozen=True)
class Mode:
    """A precision setting, in our budget's terms and in ``TrainingArguments``' terms."""

    name: str
    precision: str
    """``Budget.precision``: fp32, or bf16 autocast."""
    storage: str
    """``Budget.frozen_backbone_dtype``: how the frozen backbone's weights are held."""
    backbone_dropout: bool = True
    """False only in *what-if* modes: every dropout inside the frozen backbone set to p=0 (a recipe change
    no budget offers; the XPE authors' stack trains with the backbone's dropout active)."""
    dropout_kernel: str = "torch"
    """``Budget.dropout_kernel`` of our stack: ``torch`` or ``lean`` (:mod:`xpe_bench.lean_dropout`)."""

    @property
    def reference_bf16(self) -> bool:
        """The same-precision ``TrainingArguments(bf16=...)`` (the reference has no bf16-storage mode)."""
        return self.precision == "bf16"

    @property
    def reference_mode(self) -> str:
        """The reference mode that computes at this mode's precision."""
        return "bf16" if self.precision == "bf16" else "fp32"

    @property
    def what_if(self) -> bool:
        return not self.backbone_dropout


MODES: dict[str, Mode] = {
    "fp32": Mode("fp32", "fp32", "fp32"),
    "bf16": Mode("bf16", "bf16", "fp32"),
    "fast": Mode("fast", "bf16", "bf16"),
    "fp32-lean": Mode("fp32-lean", "fp32", "fp32", dropout_kernel="lean"),
    "bf16-lean": Mode("bf16-lean", "bf16", "fp32", dropout_kernel="lean"),
    "fast-lean": Mode("fast-lean", "bf16", "bf16", dropout_kernel="lean"),
    "fp32-nodrop": Mode("fp32-nodrop", "fp32", "fp32", backbone_dropout=False),
    "fast-nodrop": Mode("fast-nodrop", "bf16", "bf16", backbone_dropout=False),
}
"""``bf16`` is autocast alone (what ``Trainer(bf16=True)`` does); ``fast`` adds a bf16-held frozen backbone.
``-lean`` modes train with the lean dropout kernel, the others with torch's. The ``-nodrop`` modes are
what-if measurements (see :attr:`Mode.backbone_dropout`)."""
HARNESS_MODES = ("fp32", "bf16", "fast", "fp32-lean", "bf16-lean", "fast-lean")
WHAT_IF_MODES = ("fp32-nodrop", "fast-nodrop")


def disable_backbone_dropout(encoder: nn.Module) -> int:
    """Set every dropout inside ``encoder`` to p=0 (survives ``.train()``); returns how many were changed.

    With attention dropout at 0, ``scaled_dot_product_attention`` can use its fused CPU kernel instead of the
    unfused math path that a non-zero ``dropout_p`` forces during training.
    """
    changed = 0
    for module in encoder.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            module.p = 0.0
            changed += 1
    return changed


# ------------------------------------------------------------------------------------------- recording


@dataclass
class Call:
    """One forward call of the encoder."""

    start: float
    grad: bool
    batch: int
    length: int
    """Sequence length as computed: the padded width plus the virtual tokens."""
    real_tokens: int
    """Non-padding positions, virtual tokens included (attention-mask sum)."""
    autocast: bool = False
    """Whether a (CPU or CUDA) autocast context was active: which precision the call really ran in."""
    peak_rss: int = 0
    """The process's resident-set high-water mark when the call started (bytes)."""


class ShapeRecorder:
    """Forward pre-hook on the encoder: records the shape of every call, with a timestamp."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.calls: list[Call] = []
        self.sync = sync

    def attach(self, encoder: nn.Module) -> torch.utils.hooks.RemovableHandle:
        return encoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.sync is not None:
            self.sync()
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        reference = embeds if embeds is not None else ids
        assert reference is not None, "the encoder was called without input_ids or inputs_embeds"
        batch, length = int(reference.shape[0]), int(reference.shape[1])
        mask = kwargs.get("attention_mask")
        real = int(mask.sum().item()) if mask is not None else batch * length
        autocast = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
        call = Call(
            time.perf_counter(), torch.is_grad_enabled(), batch, length, real, autocast, peak_rss_bytes()
        )
        self.calls.append(call)

    def train_calls(self) -> list[Call]:
        return [c for c in self.calls if c.grad]

    def eval_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.grad]


class StepClock:
    """A :class:`xpe_bench.methods.ProgressReporter` that timestamps the end of every optimizer step."""

    def __init__(
        self, sync: Callable[[], None] | None = None, on_step: Callable[[], None] | None = None
    ) -> None:
        self.ends: list[float] = []
        self.sync = sync
        self.on_step = on_step

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1, **info: Any) -> None:
        if steps <= 0:  # the loop reports resumed steps with advance(0)
            return
        if self.sync is not None:
            self.sync()
        self.ends.append(time.perf_counter())
        if self.on_step is not None:
            self.on_step()

    def finish(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------- FLOPs


@dataclass(frozen=True)
class EncoderShape:
    layers: int
    hidden: int
    ffn: int

    @classmethod
    def of(cls, config: Any) -> EncoderShape:
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size)


def encoder_flops(
    shape: EncoderShape, batch: int, length: int, *, train: bool, attention: bool = True
) -> float:
    """Matmul FLOPs of one encoder call on a ``[batch, length]`` (padded, prompt included) input.

    Forward, per layer and sequence: Q, K, V and output projections ``4 * 2*L*d*d``, FFN ``2 * 2*L*d*f``,
    attention scores ``Q K^T`` and context ``P V`` ``2 * 2*L*L*d``. Backward with *frozen* weights computes
    activation gradients only (no weight gradients): one matmul per projection and FFN matmul (``1x`` their
    forward) but two per attention product (the gradients of both of its operands: ``2x``). So a training
    call costs ``2 * (linear terms) + 3 * (attention terms)``. Embedding lookups, LayerNorm, GELU, softmax,
    the head and the prompt module are not counted (under 1% of the total here). ``attention=False``
    leaves out the two attention products (what they add is their share).
    """
    linear = 8.0 * length * shape.hidden**2 + 4.0 * length * shape.hidden * shape.ffn
    products = 4.0 * length**2 * shape.hidden if attention else 0.0
    per_sequence = 2 * linear + 3 * products if train else linear + products
    return shape.layers * batch * per_sequence


# --------------------------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    stack: str
    method: str
    mode: str
    steps: int
    timed_steps: int
    """Steps inside the throughput window: all but the first (it carries one-off warm-up costs)."""
    timed_examples: int
    timed_seconds: float
    first_step_seconds: float
    total_seconds: float
    examples_per_s: float
    padded_tokens: int
    real_tokens: int
    padded_tokens_per_s: float
    flops: float
    """Encoder matmul FLOPs of the timed steps (see :func:`encoder_flops`)."""
    flops_per_s: float
    mean_length: float
    max_length: int
    """The widest batch of the run (padded, prompt included): what sets the activation-memory peak."""
    padding_fraction: float
    peak_rss_at_first_step: int
    """RSS high-water mark when the first training forward started (after all set-up and tokenisation)."""
    autocast_fraction: float
    """Share of the timed encoder calls that ran under autocast (1.0 for bf16 modes, 0.0 for fp32)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_training(
    stack: str,
    method: str,
    mode: str,
    calls: Sequence[Call],
    step_ends: Sequence[float],
    shape: EncoderShape,
) -> TrainResult:
    """Throughput over steps 2..N (the first step's one-off costs are reported separately)."""
    steps = len(step_ends)
    if steps == 0 or len(calls) < steps:
        raise RuntimeError(f"recorded {len(calls)} training forwards for {steps} steps")
    calls = list(calls)[:steps]
    window = calls[1:] if steps > 1 else calls
    seconds = step_ends[-1] - step_ends[0] if steps > 1 else step_ends[0] - calls[0].start
    examples = sum(c.batch for c in window)
    padded = sum(c.batch * c.length for c in window)
    real = sum(c.real_tokens for c in window)
    flops = sum(encoder_flops(shape, c.batch, c.length, train=True) for c in window)
    return TrainResult(
        stack=stack,
        method=method,
        mode=mode,
        steps=steps,
        timed_steps=len(window),
        timed_examples=examples,
        timed_seconds=seconds,
        first_step_seconds=step_ends[0] - calls[0].start,
        total_seconds=step_ends[-1] - calls[0].start,
        examples_per_s=examples / seconds,
        padded_tokens=padded,
        real_tokens=real,
        padded_tokens_per_s=padded / seconds,
        flops=flops,
        flops_per_s=flops / seconds,
        mean_length=padded / examples,
        max_length=max(c.length for c in calls),
        peak_rss_at_first_step=calls[0].peak_rss,
        padding_fraction=1.0 - real / padded,
        autocast_fraction=sum(c.autocast for c in window) / len(window),
    )


@dataclass
class EvalResult:
    stack: str
    mode: str
    sentences: int
    seconds: float
    sentences_per_s: float
    padded_tokens: int
    real_tokens: int
    flops: float
    flops_per_s: float
    autocast_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_eval(
    stack: str, mode: str, calls: Sequence[Call], seconds: float, shape: EncoderShape
) -> EvalResult:
    sentences = sum(c.batch for c in calls)
    flops = sum(encoder_flops(shape, c.batch, c.length, train=False) for c in calls)
    return EvalResult(
        stack=stack,
        mode=mode,
        sentences=sentences,
        seconds=seconds,
        sentences_per_s=sentences / seconds,
        padded_tokens=sum(c.batch * c.length for c in calls),
        real_tokens=sum(c.real_tokens for c in calls),
        flops=flops,
        flops_per_s=flops / seconds,
        autocast_fraction=sum(c.autocast for c in calls) / max(1, len(calls)),
    )


# ---------------------------------------------------------------------------------------- data, budget


def load_sources(
    registry: Registry, data_root: Path | None, sources: str = SOURCES, train_per_lang: int | None = None
) -> tuple[TaskSpec, TaskData, datasets.Dataset]:
    """The training examples of ``sources`` (whole splits, or the budget's fixed per-language subset)."""
    import datasets

    from xpe_bench.budgets import subset_indices

    task = registry.task(TASK)
    data = TaskData(task, data_root)
    parts = []
    for lang in task.languages.resolve(sources, option="--sources"):
        full = data.load(lang, "train")
        keep = subset_indices(len(full), train_per_lang, data_seed=0, lang=lang, split="train")
        parts.append(full.select(keep) if len(keep) != len(full) else full)
    train = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return task, data, train


def load_tests(data: TaskData, langs: Sequence[str]) -> datasets.Dataset:
    import datasets

    parts = [data.load(lang, "test") for lang in langs]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def our_budget(steps: int, mode: Mode, train_per_lang: int | None = None) -> Budget:
    """The ``paper`` recipe with ``max_steps=steps`` and no evaluation or model selection during training.

    ``eval_every`` beyond the last step leaves exactly one evaluation, which the loop always runs at the last
    step; :func:`train_ours` passes a one-sentence dev set so that it costs milliseconds.
    """
    budget = load_budget("paper").with_overrides(
        max_steps=steps,
        eval_every=steps + 1,
        select_best=False,
        batch_size=BATCH_SIZE,
        eval_batch_size=EVAL_BATCH_SIZE,
        max_length=MAX_LENGTH,
        precision=mode.precision,
        frozen_backbone_dtype=mode.storage,
        dropout_kernel=mode.dropout_kernel,
        train_per_lang=train_per_lang,
    )
    return replace(budget, early_stopping_patience=None)


def create_method(registry: Registry, backbone: Backbone, task: TaskSpec, name: str) -> TorchMethod:
    import transformers

    transformers.set_seed(SEED)
    method = registry.method(name).create({})
    method.setup(backbone, task)
    return method  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ ours


def train_ours(
    method: TorchMethod,
    train: datasets.Dataset,
    budget: Budget,
    workdir: Path,
    recorder: ShapeRecorder,
    clock: StepClock,
) -> dict[str, Any]:
    """``method.fit`` as the runner calls it, with a one-sentence dev set.

    The loop always evaluates after its last step; a one-sentence dev set makes that (and the fit checkpoint
    it writes) cost milliseconds, and it happens after the last step's timestamp anyway. (An *empty* dev set
    is not possible: ``training.encode`` fails on an empty list of texts.)
    """
    context = FitContext(train, train.select([0]), budget, SEED, workdir, clock)
    handle = recorder.attach(method.model.encoder)
    try:
        return method.fit(context)
    finally:
        handle.remove()


def eval_ours(
    method: TorchMethod, encoded: training.Encoded, budget: Budget, recorder: ShapeRecorder
) -> float:
    """Seconds for ``predict_scores`` over already-tokenised sentences (tokenisation timed separately)."""
    method.apply_storage(budget)
    handle = recorder.attach(method.model.encoder)
    try:
        started = time.perf_counter()
        training.predict_scores(
            method.model,
            encoded,
            pad_id=method.backbone.tokenizer.pad_token_id,
            batch_size=budget.eval_batch_size,
            precision=budget.precision,
        )
        return time.perf_counter() - started
    finally:
        handle.remove()


# ------------------------------------------------------------------------------------------- reference


def reference_model_class() -> type[nn.Module]:
    """``E5ForSequenceClassification``: BertModel (no pooler) + XLM-R head on position 0, returning a loss."""
    from transformers import BertConfig, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

    class E5ForSequenceClassification(PreTrainedModel):
        config_class = BertConfig
        base_model_prefix = "bert"
        _supports_sdpa = True  # the wrapped BertModel keeps whatever attention it was loaded with

        def __init__(self, config: BertConfig, encoder: nn.Module) -> None:
            super().__init__(config)
            self.num_labels = config.num_labels
            # Named "classifier" so that PEFT's SEQ_CLS wrapper trains it (modules_to_save).
            self.classifier = RobertaClassificationHead(config)
            self.post_init()  # initialises the head only: the encoder is attached afterwards, untouched
            self.bert = encoder

        def get_input_embeddings(self) -> nn.Module:
            return self.bert.get_input_embeddings()

        def forward(
            self,
            input_ids: torch.Tensor | None = None,
            attention_mask: torch.Tensor | None = None,
            inputs_embeds: torch.Tensor | None = None,
            labels: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
            **kwargs: Any,
        ) -> SequenceClassifierOutput:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            logits = self.classifier(hidden)  # RobertaClassificationHead reads position 0
            loss = None
            if labels is not None:
                loss = nn.functional.cross_entropy(logits.float(), labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return E5ForSequenceClassification


def build_reference(backbone: Backbone, method: str, num_labels: int) -> nn.Module:
    """The PEFT model the authors' stack trains: SEQ_CLS prompt tuning (SPT) or MLP prompt encoder (XPE)."""
    import copy

    import transformers
    from peft import PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model

    transformers.set_seed(SEED)
    config = copy.deepcopy(backbone.model.config)
    config.num_labels = num_labels
    base = reference_model_class()(config, backbone.model)
    hidden = config.hidden_size
    if method == "spt":
        peft_config: Any = PromptTuningConfig(
            task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL_TOKENS, prompt_tuning_init="RANDOM"
        )
    elif method == "xpe":
        peft_config = PromptEncoderConfig(
            task_type=TaskType.SEQ_CLS,
            num_virtual_tokens=NUM_VIRTUAL_TOKENS,
            encoder_reparameterization_type="MLP",
            encoder_hidden_size=hidden // 4,
        )
    else:
        raise ValueError(f"no reference for method {method!r}")
    return get_peft_model(base, peft_config)


def tokenise_for_trainer(backbone: Backbone, dataset: datasets.Dataset) -> datasets.Dataset:
    """What the authors' pipeline does: ``Dataset.map`` with the tokenizer, padding left to the collator."""
    # Only the tokenizer may be captured: ``datasets`` fingerprints the function by pickling its closure,
    # and capturing the Backbone would pickle (copy) the whole model on every call.
    tokenizer, prefix = backbone.tokenizer, backbone.text_prefix

    def tokenise(batch: dict[str, list[Any]]) -> Any:
        return tokenizer([prefix + text for text in batch["text"]], truncation=True, max_length=MAX_LENGTH)

    drop = [c for c in dataset.column_names if c != "label"]
    return dataset.map(tokenise, batched=True, remove_columns=drop)


def trainer_arguments(workdir: Path, steps: int, bf16: bool, *, use_cpu: bool = True, **extra: Any) -> Any:
    """The authors' ``TrainingArguments``: length grouping, Adafactor, cosine restarts; no eval, no save."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(workdir),
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        max_steps=steps,
        train_sampling_strategy="group_by_length",  # transformers 5's name for group_by_length=True
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=use_cpu,
        bf16=bf16,
        optim="adafactor",
        learning_rate=5e-5,
        weight_decay=0.01,
        lr_scheduler_type="cosine_with_restarts",
        lr_scheduler_kwargs={"num_cycles": 3},
        warmup_steps=0.1,
        max_grad_norm=1.0,
        dataloader_num_workers=0,
        seed=SEED,
        **extra,
    )


def step_callback(clock: StepClock) -> Any:
    from transformers import TrainerCallback

    class _Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.advance(1)

    return _Clock()


def make_trainer(model: nn.Module, backbone: Backbone, args: Any, train: datasets.Dataset) -> Any:
    from transformers import DataCollatorWithPadding, Trainer

    return Trainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(backbone.tokenizer),
        processing_class=backbone.tokenizer,
    )


# --------------------------------------------------------------------------------------------- helpers


def matmul_peak(dtype: torch.dtype, *, n: int = 2048, repeats: int = 7, device: str = "cpu") -> float:
    """Median FLOP/s of an ``n^3`` matmul (two warm-ups first).

    ``torch.int8`` times ``torch._int_mm`` (int8 operands, int32 accumulation: what VNNI / tensor cores
    run), counting a multiply-add as two operations like the float rates.
    """
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), dtype=dtype, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=dtype, device=device)
        multiply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch._int_mm
    else:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        multiply = torch.mm
    sync: Callable[[], None] = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(repeats + 2):
        sync()
        started = time.perf_counter()
        multiply(a, b)
        sync()
        if i >= 2:
            times.append(time.perf_counter() - started)
    return 2.0 * n**3 / statistics.median(times)


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - started


def steps_per_epoch(examples: int) -> int:
    return math.ceil(examples / BATCH_SIZE)


# ------------------------------------------------------------------------------------- worker processes


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """``--render`` (re-write the report from an earlier run's JSON), and the hidden options by which a
    benchmark re-invokes itself as one measured worker process (``--worker NAME --spec JSON --result F``)."""
    parser.add_argument("--render", type=Path, help="only re-write --out from an earlier run's JSON")
    for option in ("--worker", "--spec", "--result"):
        parser.add_argument(option, help=argparse.SUPPRESS)


def done_without_measuring(
    args: argparse.Namespace,
    workers: Mapping[str, Callable[[dict[str, Any]], Any]],
    render: Callable[[dict[str, Any]], str],
) -> bool:
    """Run the worker ``args`` names (writing its JSON result where the parent reads it), or re-render the
    report; whether either was asked for, so the caller has nothing more to do."""
    if args.worker:
        Path(args.result).write_text(json.dumps(workers[args.worker](json.loads(args.spec))))
        return True
    if args.render:
        args.out.write_text(render(json.loads(args.render.read_text())))
        return True
    return False
