"""GPU speed check: our SPT/XPE training loop in bf16 with SDPA attention, on me5-small and XLM-R-large.

    python benchmarks/gpu.py [--steps N] [--out benchmarks/GPU_RESULTS.md] [--skip-reference]

Needs CUDA; without it the script says so and exits with status 2, having measured nothing. In one process it

1. measures the GPU's bf16 matmul peak (8192^3 and 2048^3, median of several),
2. trains XPE and SPT on me5-small through xpe-bench's own ``method.fit`` in fast mode (bf16 autocast + bf16
   frozen backbone; the backbone is loaded with SDPA attention) for ``--steps`` steps, then predicts the
   Joshi-5 test sentences; optionally (PEFT installed, no ``--skip-reference``) the same with the authors'
   PEFT + ``Trainer(bf16=True)`` stack;
3. trains XPE on XLM-R-large with *random* weights (the paper's backbone; real weights need the hub) under the
   ``paper`` budget's precision (bf16 autocast, fp32 storage) and in fast mode, and extrapolates the paper
   budget's 24,000 steps plus its once-per-epoch source-dev evaluations to a total time.

Achieved FLOP/s are counted as in ``speed.py`` (see ``workload.encoder_flops``) and divided by the matmul peak
measured here. The CPU benchmark is ``speed.py``; this script is deliberately small.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import workload as wl

HERE = Path(__file__).resolve().parent
PAPER_STEPS = 24_000
PAPER_DEV_SENTENCES = 7 * 99
"""The paper evaluates on the Joshi-5 dev splits (99 sentences per language) once per epoch."""


DEVICE = "cuda"
"""Where everything runs; the hidden ``--device cpu`` exists only to smoke-test this script's logic."""


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _reset_memory() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.empty_cache()


def _max_memory() -> int:
    return torch.cuda.max_memory_allocated() if DEVICE == "cuda" else 0


def _backbone(kind: str, registry: Any) -> Any:
    """me5-small with its real weights, or XLM-R-large with random weights, on the GPU (SDPA attention)."""
    from transformers import AutoModel

    from xpe_bench.backbones import RANDOM_INIT_SHA256, Backbone, architecture_only, load_backbone
    from xpe_bench.paths import cache_root

    me5 = load_backbone(wl.BACKBONE, registry.backbones, cache_root())
    if kind == "me5-small":
        me5.model.to(DEVICE)
        return me5
    config = architecture_only("xlm-roberta-large", registry.backbones, cache_root()).model.config
    with torch.device(DEVICE):
        model = AutoModel.from_config(config, attn_implementation="sdpa", add_pooling_layer=False)
    model.eval()
    return Backbone(
        name="xlm-roberta-large",
        model=model,
        tokenizer=me5.tokenizer,  # XLM-R's SentencePiece vocabulary: the ids fit XLM-R-large's 250,002 rows
        hidden_size=config.hidden_size,
        text_prefix="",
        pooling="mean",
        weights_sha256=RANDOM_INIT_SHA256,
        source="architecture:xlm-roberta-large (random init)",
    )


def _ours(
    registry: Any, kind: str, method_name: str, mode: wl.Mode, budget: Any, train: Any, tests: Any
) -> dict[str, Any]:
    backbone = _backbone(kind, registry)
    task = registry.task(wl.TASK)
    method = wl.create_method(registry, backbone, task, method_name)
    method.model.to(DEVICE)
    _reset_memory()
    shape = wl.EncoderShape.of(backbone.model.config)
    recorder, clock = wl.ShapeRecorder(sync=_sync), wl.StepClock(sync=_sync)
    with tempfile.TemporaryDirectory(prefix="xpe-gpu-") as tmp:
        wl.train_ours(method, train, budget, Path(tmp), recorder, clock)
    result = wl.summarise_training("ours", method_name, mode.name, recorder.train_calls(), clock.ends, shape)
    recorder.calls = []
    encoded = method.encode(tests, budget)
    seconds = wl.eval_ours(method, encoded, budget, recorder)
    evaluation = wl.summarise_eval("ours", mode.name, recorder.eval_calls(), seconds, shape)
    out = {
        "backbone": kind,
        "train": result.to_dict(),
        "eval": evaluation.to_dict(),
        "max_memory_allocated": _max_memory(),
    }
    del method, backbone
    _reset_memory()
    return out


def _reference(registry: Any, method_name: str, steps: int, train: Any, tests: Any) -> dict[str, Any]:
    backbone = _backbone("me5-small", registry)
    task = registry.task(wl.TASK)
    model = wl.build_reference(backbone, method_name, task.num_labels)
    _reset_memory()
    shape = wl.EncoderShape.of(backbone.model.config)
    recorder, clock = wl.ShapeRecorder(sync=_sync), wl.StepClock(sync=_sync)
    with tempfile.TemporaryDirectory(prefix="xpe-gpu-") as tmp:
        args = wl.trainer_arguments(Path(tmp), steps, True, use_cpu=DEVICE == "cpu")
        trainer = wl.make_trainer(model, backbone, args, wl.tokenise_for_trainer(backbone, train))
        trainer.add_callback(wl.step_callback(clock))
        handle = recorder.attach(backbone.model)
        trainer.train()
        result = wl.summarise_training(
            "reference", method_name, "bf16", recorder.train_calls(), clock.ends, shape
        )
        recorder.calls = []
        test_tok = wl.tokenise_for_trainer(backbone, tests)
        _sync()
        started = time.perf_counter()
        trainer.predict(test_tok)
        _sync()
        seconds = time.perf_counter() - started
        handle.remove()
    evaluation = wl.summarise_eval("reference", "bf16", recorder.eval_calls(), seconds, shape)
    out = {
        "backbone": "me5-small",
        "train": result.to_dict(),
        "eval": evaluation.to_dict(),
        "max_memory_allocated": _max_memory(),
    }
    del trainer, model, backbone
    _reset_memory()
    return out


def _paper_estimate(run: dict[str, Any], train_examples: int) -> dict[str, float]:
    """24,000 steps at the measured rate, plus one source-dev evaluation per epoch at the measured rate."""
    t, e = run["train"], run["eval"]
    seconds_per_step = t["timed_seconds"] / t["timed_steps"]
    evaluations = math.ceil(PAPER_STEPS / wl.steps_per_epoch(train_examples))
    eval_seconds = evaluations * PAPER_DEV_SENTENCES / e["sentences_per_s"]
    return {
        "steps_per_s": 1.0 / seconds_per_step,
        "train_hours": PAPER_STEPS * seconds_per_step / 3600,
        "evaluations": evaluations,
        "eval_hours": eval_seconds / 3600,
        "total_hours": (PAPER_STEPS * seconds_per_step + eval_seconds) / 3600,
    }


def _render(r: dict[str, Any]) -> str:
    peak = r["peak_bf16"]
    lines = [
        "# GPU speed check",
        "",
        f"- GPU: {r['gpu']}; torch {r['torch']}; command: `{r['command']}`",
        f"- bf16 matmul peak measured here: {peak['8192'] / 1e12:.1f} TFLOP/s (8192^3), "
        f"{peak['2048'] / 1e12:.1f} TFLOP/s (2048^3); fractions below use the 8192^3 figure.",
        f"- {r['steps']} training steps per configuration, batch {wl.BATCH_SIZE}, max length "
        f"{wl.MAX_LENGTH} + {wl.NUM_VIRTUAL_TOKENS} virtual tokens; throughput over steps 2..N.",
        "",
        "| backbone | stack | method | mode | train examples/s | steps/s | train TFLOP/s | % of bf16 peak | "
        "eval sentences/s | eval % of peak | max GPU memory (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        t, e = run["train"], run["eval"]
        lines.append(
            f"| {run['backbone']} | {t['stack']} | {t['method']} | {t['mode']} | {t['examples_per_s']:.0f} | "
            f"{t['timed_steps'] / t['timed_seconds']:.2f} | {t['flops_per_s'] / 1e12:.1f} | "
            f"{100 * t['flops_per_s'] / peak['8192']:.0f} | {e['sentences_per_s']:.0f} | "
            f"{100 * e['flops_per_s'] / peak['8192']:.0f} | {run['max_memory_allocated'] / 2**30:.1f} |"
        )
    lines += [
        "",
        "## XLM-R-large (random weights): the paper budget's 24,000 steps, extrapolated",
        "",
        "| mode | steps/s | training (h) | source-dev evaluations | evaluation (h) | total (h, estimate) |",
        "|---|---|---|---|---|---|",
    ]
    if not r["paper_estimates"]:
        lines.append("| (not run: --skip-large) | | | | | |")
    for mode, est in r["paper_estimates"].items():
        lines.append(
            f"| {mode} | {est['steps_per_s']:.2f} | {est['train_hours']:.2f} | {est['evaluations']} | "
            f"{est['eval_hours']:.2f} | {est['total_hours']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200, help="training steps per configuration")
    parser.add_argument("--out", type=Path, default=HERE / "GPU_RESULTS.md")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the PEFT + Trainer stack")
    parser.add_argument("--skip-large", action="store_true", help="do not run XLM-R-large")
    parser.add_argument("--train-per-lang", type=int, default=None, help="fixed subset per language")
    parser.add_argument("--eval-langs", default=wl.SOURCES, help="test splits for the eval measurement")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print(
            "gpu.py: CUDA is not available (torch "
            f"{torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); nothing was measured. "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; the CPU benchmark is "
            "benchmarks/speed.py.",
            file=sys.stderr,
        )
        return 2
    from xpe_bench.paths import resolve_data_root
    from xpe_bench.plugins import load_registry

    registry = load_registry()
    task, data, train = wl.load_sources(registry, resolve_data_root(), wl.SOURCES, args.train_per_lang)
    tests = wl.load_tests(data, task.languages.resolve(args.eval_langs))
    n_peak = 8192 if DEVICE == "cuda" else 1024
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else f"none ({DEVICE} smoke test)",
        "torch": torch.__version__,
        "command": "python " + " ".join(["benchmarks/gpu.py", *(argv or sys.argv[1:])]),
        "steps": args.steps,
        "peak_bf16": {
            "8192": wl.matmul_peak(torch.bfloat16, n=n_peak, repeats=10, device=DEVICE),
            "2048": wl.matmul_peak(
                torch.bfloat16, n=2048, repeats=3 if DEVICE == "cpu" else 20, device=DEVICE
            ),
        },
        "runs": [],
        "paper_estimates": {},
    }
    fast = wl.MODES["fast"]
    for method in wl.METHODS:
        budget = wl.our_budget(args.steps, fast, args.train_per_lang)
        results["runs"].append(_ours(registry, "me5-small", method, fast, budget, train, tests))
        if not args.skip_reference:
            try:
                import peft  # noqa: F401
            except ImportError:
                print("gpu.py: PEFT not installed; skipping the reference stack", file=sys.stderr)
            else:
                results["runs"].append(_reference(registry, method, args.steps, train, tests))
    if not args.skip_large:
        paper = wl.MODES["bf16"]  # the paper budget's precision: bf16 autocast, fp32-held backbone
        for mode in (paper, fast):
            budget = wl.our_budget(args.steps, mode, args.train_per_lang)
            run = _ours(registry, "xlm-roberta-large", "xpe", mode, budget, train, tests)
            results["runs"].append(run)
            label = "paper budget (bf16 autocast)" if mode is paper else "fast (bf16 backbone)"
            results["paper_estimates"][label] = _paper_estimate(run, len(train))
    args.out.write_text(_render(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(_render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
