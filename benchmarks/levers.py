"""Speed levers for the converged preset (`standard`: bf16 autocast, fp32 weights, lean dropout kernel).

The question (issue #16): can a training step at the converged preset's precision run >= 1.4x faster than
today's eager step, and evaluation faster, with the levers known on this CPU? Each lever runs the same
``standard`` training (same seed, so the very same batches) in a fresh process with an empty inductor
cache, so a compile cost is the cold one a first run pays:

* ``eager``: the harness as it trains today (the baseline);
* ``compile-layers``: ``torch.compile`` (inductor, dynamic shapes) of every encoder layer, lean kernel;
* ``compile-layers-torch-dropout``: the same with torch's dropout, which inductor can trace and fuse
  (its random masks are drawn in-graph, so they differ from the lean kernel's);
* ``fused-attention-core``: the lean attention with its elementwise chain (key mask, softmax, drop mask,
  and their backward) compiled into fused kernels; its random words and matmuls stay eager.

Evaluation (no dropout, SDPA's fused kernels) is timed eager and with every layer compiled, in one process,
with the agreement of the two sets of predictions. A one-process torch.profiler breakdown of the eager step
says where its time goes. Nothing here changes the harness; every lever is applied from this script.

    python benchmarks/levers.py --steps 32 --repeats 3 --out benchmarks/RESULTS-levers.md

Needs a quiet machine: every time is divided by the bf16 matmul peak measured at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as wl

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "RESULTS-levers.md"
TRAIN_LEVERS = ("eager", "compile-layers", "compile-layers-torch-dropout", "fused-attention-core")
WARMUP_STEPS = 4
"""Steps left out of the steady-state window: they carry the compile (and recompiles for new shapes)."""
EVAL_LANGS = "eng_Latn,zho_Hans,hin_Deva,yor_Latn,bod_Tibt,ibo_Latn,nqo_Nkoo"
CONVERGED_RUN = "leaderboards/results/sib200-me5-small-joshi5-standard/" + (
    "sib200-spt-me5-small-standard-s1-f5fbf4839799.json.gz"
)


# ------------------------------------------------------------------------------------------- levers


def _compile_layers(encoder: Any) -> None:
    """Compile every layer of the encoder's stack in place (one graph, shared by the 12 layers)."""
    import torch._dynamo.config

    torch._dynamo.config.recompile_limit = 64  # shapes and masks vary batch to batch
    for layer in encoder.encoder.layer:
        layer.compile(dynamic=True)


def _install_fused_attention_core() -> None:
    """Swap the lean attention's autograd function for one whose elementwise chain is compiled."""
    import torch

    from xpe_bench import lean_dropout as ld

    def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None:
            scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1)

    def forward_core(scores: torch.Tensor, mask: torch.Tensor | None, drop: torch.Tensor) -> torch.Tensor:
        return masked_softmax(scores, mask).masked_fill(drop, 0)

    def backward_core(
        scores: torch.Tensor, mask: torch.Tensor | None, drop: torch.Tensor, grad_dropped: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = masked_softmax(scores, mask)
        grad = grad_dropped.masked_fill(drop, 0)
        return probs.masked_fill(drop, 0), probs * (grad - (grad * probs).sum(-1, keepdim=True))

    fused_forward = torch.compile(forward_core, dynamic=True)
    fused_backward = torch.compile(backward_core, dynamic=True)

    class FusedCoreAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, p: float, scale: float) -> Any:
            q_scaled, k_wide, v_wide = ld._packed(q, scale), ld._packed(k), ld._packed(v)
            scores = torch.matmul(q_scaled, k_wide.transpose(-1, -2))
            drop, keep_scale = ld.drop_mask(tuple(scores.shape), p, scores.device)
            out = torch.matmul(fused_forward(scores, mask, drop), v_wide)
            ctx.save_for_backward(q_scaled, k_wide, v_wide, mask, drop)
            ctx.scale, ctx.keep_scale, ctx.dtypes = scale, keep_scale, (q.dtype, k.dtype, v.dtype)
            return ld._heads_last(out, q.dtype, keep_scale)

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> tuple[Any, ...]:
            q_scaled, k_wide, v_wide, mask, drop = ctx.saved_tensors
            q_dtype, k_dtype, v_dtype = ctx.dtypes
            scores = torch.matmul(q_scaled, k_wide.transpose(-1, -2))
            grad = ld._packed(grad_out.transpose(1, 2), ctx.keep_scale, q_scaled.dtype)
            dropped, grad_scores = fused_backward(
                scores, mask, drop, torch.matmul(grad, v_wide.transpose(-1, -2))
            )
            grad_v = ld._heads_last(torch.matmul(dropped.transpose(-1, -2), grad), v_dtype)
            grad_q = ld._heads_last(torch.matmul(grad_scores, k_wide), q_dtype, ctx.scale)
            grad_k = ld._heads_last(torch.matmul(grad_scores.transpose(-1, -2), q_scaled), k_dtype)
            return *(t.transpose(1, 2) for t in (grad_q, grad_k, grad_v)), None, None, None

    ld._AttentionWithDropout = FusedCoreAttention  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ workers


def _setup(method_name: str) -> tuple[Any, Any, Any, Any, Any, Any]:
    from xpe_bench.backbones import load_backbone
    from xpe_bench.paths import cache_root, resolve_data_root
    from xpe_bench.plugins import load_registry

    registry = load_registry()
    backbone = load_backbone(wl.BACKBONE, registry.backbones, cache_root())
    task, data, train = wl.load_sources(registry, resolve_data_root(), wl.SOURCES, None)
    method = wl.create_method(registry, backbone, task, method_name)
    return registry, backbone, task, data, train, method


def _standard(steps: int, dropout_kernel: str = "lean") -> Any:
    """The converged preset cut to ``steps`` steps, with one (one-sentence) evaluation at the end."""
    from xpe_bench.budgets import load_budget

    return load_budget("standard").with_overrides(
        max_steps=steps, eval_every=steps + 1, select_best=False, dropout_kernel=dropout_kernel
    )


def worker_train(spec: dict[str, Any]) -> dict[str, Any]:
    lever, steps = spec["lever"], spec["steps"]
    if lever == "fused-attention-core":
        _install_fused_attention_core()
    _, backbone, _, _, train, method = _setup(spec["method"])
    if lever.startswith("compile-layers"):
        _compile_layers(method.model.encoder)
    budget = _standard(steps, "torch" if lever.endswith("torch-dropout") else "lean")
    recorder, clock = wl.ShapeRecorder(), wl.StepClock()
    with tempfile.TemporaryDirectory(prefix="xpe-levers-") as tmp:
        report = wl.train_ours(method, train, budget, Path(tmp), recorder, clock)
    calls, ends = recorder.train_calls()[:steps], clock.ends
    shape = wl.EncoderShape.of(backbone.model.config)
    window = calls[WARMUP_STEPS:]
    seconds = ends[-1] - ends[WARMUP_STEPS - 1]
    flops = sum(wl.encoder_flops(shape, c.batch, c.length, train=True) for c in window)
    return {
        "lever": lever,
        "method": spec["method"],
        "steps": steps,
        "warmup_seconds": ends[WARMUP_STEPS - 1] - calls[0].start,
        "steady_seconds": seconds,
        "steady_steps": len(window),
        "seconds_per_step": seconds / len(window),
        "median_step_seconds": statistics.median(
            b - a for a, b in zip(ends[WARMUP_STEPS - 1 :], ends[WARMUP_STEPS:], strict=False)
        ),
        "flops_per_s": flops / seconds,
        "attention_flop_share": sum(
            wl.encoder_flops(shape, c.batch, c.length, train=True)
            - wl.encoder_flops(shape, c.batch, c.length, train=True, attention=False)
            for c in window
        )
        / flops,
        "final_train_loss": report["history"][-1]["train_loss"],
        "batch_shapes": [[c.batch, c.length] for c in window],
    }


def worker_eval(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from xpe_bench import training

    _, backbone, task, data, _, method = _setup(spec["method"])
    budget = _standard(1)
    tests = wl.load_tests(data, task.languages.resolve(EVAL_LANGS))
    encoded = method.encode(tests, budget)
    method.apply_storage(budget)
    shape = wl.EncoderShape.of(backbone.model.config)
    recorder = wl.ShapeRecorder()
    handle = recorder.attach(method.model.encoder)

    def predict() -> tuple[Any, float]:
        started = time.perf_counter()
        scores = training.predict_scores(
            method.model, encoded, pad_id=backbone.tokenizer.pad_token_id, batch_size=64, precision="bf16"
        )
        return scores, time.perf_counter() - started

    eager, eager_s = predict()
    flops = sum(wl.encoder_flops(shape, c.batch, c.length, train=False) for c in recorder.calls)
    _compile_layers(method.model.encoder)
    _, first_compiled_s = predict()
    compiled, compiled_s = predict()
    handle.remove()
    return {
        "method": spec["method"],
        "sentences": len(tests),
        "eager_seconds": eager_s,
        "compiled_first_seconds": first_compiled_s,
        "compiled_seconds": compiled_s,
        "eager_flops_per_s": flops / eager_s,
        "compiled_flops_per_s": flops / compiled_s,
        "prediction_agreement": float(np.mean(eager.argmax(1) == compiled.argmax(1))),
        "max_abs_score_difference": float(np.abs(eager - compiled).max()),
    }


def worker_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Self CPU time by op family over ``steps`` eager steps after two warm-up steps."""
    from speed import _profile_categories
    from torch.profiler import ProfilerActivity, profile

    _, _, _, _, train, method = _setup(spec["method"])
    recorder, clock = wl.ShapeRecorder(), wl.StepClock()
    budget = _standard(2 + spec["steps"])
    holder: dict[str, Any] = {}

    def on_step() -> None:  # start profiling after two steps, stop before the final evaluation
        if len(clock.ends) == 2:
            holder["prof"] = profile(activities=[ProfilerActivity.CPU])
            holder["prof"].__enter__()
        elif len(clock.ends) == 2 + spec["steps"]:
            holder["prof"].__exit__(None, None, None)

    clock.on_step = on_step
    with tempfile.TemporaryDirectory(prefix="xpe-levers-") as tmp:
        wl.train_ours(method, train, budget, Path(tmp), recorder, clock)
    families: dict[str, float] = {}
    for event in holder["prof"].key_averages():
        family = _profile_categories(event.key)
        families[family] = families.get(family, 0.0) + event.self_cpu_time_total / 1e6
    attention = {
        event.key: event.cpu_time_total / 1e6
        for event in holder["prof"].key_averages()
        if event.key in ("_AttentionWithDropout", "_AttentionWithDropoutBackward")
    }
    return {"families": families, "attention_total": attention, "steps": spec["steps"]}


WORKERS = {"train": worker_train, "eval": worker_eval, "profile": worker_profile}


# --------------------------------------------------------------------------------------- orchestration


def _spawn(worker: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in a fresh process with an empty inductor cache (cold compile costs)."""
    with tempfile.TemporaryDirectory(prefix="xpe-levers-cache-") as cache:
        result = Path(cache) / "result.json"
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        command = [
            sys.executable,
            __file__,
            "--worker",
            worker,
            "--spec",
            json.dumps(spec),
            "--result",
            str(result),
        ]
        print(f"[levers] {worker} {spec}", file=sys.stderr, flush=True)
        subprocess.run(command, env=env, check=True)
        return json.loads(result.read_text())


def _converged_run() -> dict[str, Any]:
    """The harness's own timings of one committed run at ``standard``, with what it ran on."""
    import gzip

    compact = json.loads(gzip.decompress((HERE.parent / CONVERGED_RUN).read_bytes()))
    manifest = compact["manifest"]
    return {
        "train": manifest["timings"]["train_seconds"],
        "eval": manifest["timings"]["eval_seconds"],
        "targets": len(compact["predictions"]),
        "cores": manifest["hardware"]["cpu_count"],
    }


def measure(steps: int, method: str, profile_steps: int, repeats: int) -> dict[str, Any]:
    import torch
    from speed import _cpu_model

    converged_run = _converged_run()  # before minutes of measuring: a missing file fails at once
    started = time.time()
    load_start = os.getloadavg()
    peak = wl.matmul_peak(torch.bfloat16)
    # interleaved (every lever once, then again): a slow spell of a shared machine hits all of them alike
    train = [
        {**_spawn("train", {"lever": lever, "steps": steps, "method": method}), "repeat": repeat}
        for repeat in range(repeats)
        for lever in TRAIN_LEVERS
    ]
    evaluation = _spawn("eval", {"method": method})
    profiled = _spawn("profile", {"method": method, "steps": profile_steps})
    return {
        "command": " ".join(["python", "benchmarks/levers.py", *sys.argv[1:]]),
        "cpu": _cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "minutes": (time.time() - started) / 60,
        "bf16_peak_flops": peak,
        "bf16_peak_end": wl.matmul_peak(torch.bfloat16),
        "train": train,
        "eval": evaluation,
        "profile": profiled,
        "converged_run": converged_run,
    }


def _pct(flops_per_s: float, peak: float) -> str:
    return f"{100 * flops_per_s / peak:.0f}"


TITLE = "Speed levers at the converged preset (`standard`: bf16 autocast, fp32 weights, lean dropout)"


def render(r: dict[str, Any]) -> str:
    return "\n".join([f"# {TITLE}", "", *render_body(r)])


def render_body(r: dict[str, Any]) -> list[str]:
    """The report without its title; ``speed.py`` embeds it in ``RESULTS.md``."""
    peak = r["bf16_peak_flops"]
    base = next(t for t in r["train"] if t["lever"] == "eager")
    loads = [", ".join(f"{x:.2f}" for x in r[key]) for key in ("load_start", "load_end")]
    lines = [
        f"Command: `{r['command']}` ({r['minutes']:.1f} min). CPU {r['cpu']}, torch {r['torch']}, "
        f"{r['threads']} threads. bf16 matmul peak {peak / 1e9:.0f} GFLOP/s at start, "
        f"{r['bf16_peak_end'] / 1e9:.0f} at end. Load average at start {loads[0]}; at end {loads[1]}.",
        "",
        f"Training: method {base['method']}, the `standard` preset cut to {base['steps']} steps (one seed, "
        f"so every lever trains on the same batches). The first {WARMUP_STEPS} steps carry the compile "
        f"costs and are reported as warm-up; the steady window is the other {base['steady_steps']}. Each "
        "lever is a fresh process with an empty inductor cache. FLOPs count the encoder's matmuls "
        "(`workload.encoder_flops`).",
        "",
        "| lever | warm-up s (first 4 steps) | s/step (steady), median [range] | GFLOP/s | % of bf16 peak "
        "| vs eager: paired ratio, median [range] | final running loss | bit-identical to eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {lever: [t for t in r["train"] if t["lever"] == lever] for lever in TRAIN_LEVERS}
    eager = {t.get("repeat", 0): t for t in runs["eager"]}
    speedup: dict[str, float] = {}
    for lever, group in runs.items():
        step = [t["seconds_per_step"] for t in group]
        ratios = [eager[t.get("repeat", 0)]["seconds_per_step"] / t["seconds_per_step"] for t in group]
        speedup[lever] = statistics.median(ratios)
        losses = {t["final_train_loss"] for t in group}
        same = "-" if lever == "eager" else ("yes" if losses == {base["final_train_loss"]} else "no")
        median_step = statistics.median(step)
        lines.append(
            f"| {lever} | {statistics.median(t['warmup_seconds'] for t in group):.1f} | {median_step:.3f} "
            f"[{min(step):.3f}, {max(step):.3f}] | "
            f"{statistics.median(t['flops_per_s'] for t in group) / 1e9:.0f} | "
            f"{_pct(statistics.median(t['flops_per_s'] for t in group), peak)} | {speedup[lever]:.2f}x "
            f"[{min(ratios):.2f}, {max(ratios):.2f}] | {', '.join(f'{x:.6f}' for x in sorted(losses))} "
            f"| {same} |"
        )
    best = max((lever for lever in speedup if lever != "eager"), key=lambda lever: speedup[lever])
    verdict = "met" if speedup[best] >= 1.4 else "missed"
    eager_step = statistics.median(t["seconds_per_step"] for t in runs["eager"])
    e = r["eval"]
    lines += [
        "",
        f"{len(eager)} interleaved repeat(s) of every lever; a paired ratio divides the eager step of a "
        "repeat by the lever's in the same repeat. Target: 1.4x the eager step = "
        f"{eager_step / 1.4:.3f} s/step. Best lever: {best} at {speedup[best]:.2f}x: **{verdict}**.",
        "",
        f"Evaluation: {e['sentences']} test sentences ({EVAL_LANGS}), batch 64, bf16 autocast, one process.",
        "",
        "| mode | seconds | GFLOP/s | % of bf16 peak |",
        "|---|---|---|---|",
        f"| eager | {e['eager_seconds']:.1f} | {e['eager_flops_per_s'] / 1e9:.0f} | "
        f"{_pct(e['eager_flops_per_s'], peak)} |",
        f"| layers compiled, first pass (compiles) | {e['compiled_first_seconds']:.1f} | - | - |",
        f"| layers compiled, second pass | {e['compiled_seconds']:.1f} | "
        f"{e['compiled_flops_per_s'] / 1e9:.0f} | {_pct(e['compiled_flops_per_s'], peak)} |",
        "",
        f"Compiled evaluation is {e['eager_seconds'] / e['compiled_seconds']:.2f}x eager once compiled. Its "
        f"predictions agree with eager on {100 * e['prediction_agreement']:.2f}% of the sentences (largest "
        f"score difference {e['max_abs_score_difference']:.3g})"
        + (
            ": it changes rounding, so a budget using it would have to record it."
            if e["max_abs_score_difference"] > 0
            else ": the scores are bit-identical."
        ),
        "",
        "Where the eager step's time goes (torch.profiler, self CPU time over "
        f"{r['profile']['steps']} steps):",
        "",
        "| op family | s | share |",
        "|---|---|---|",
    ]
    families = r["profile"]["families"]
    total = sum(families.values())
    for family, seconds in sorted(families.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {family} | {seconds:.2f} | {100 * seconds / total:.0f}% |")
    attention = sum(r["profile"]["attention_total"].values())
    run = r["converged_run"]
    lines += [
        "",
        f"The lean attention-with-dropout (forward and backward, inclusive time) takes {attention:.2f} s of "
        f"{total:.2f} s ({100 * attention / total:.0f}%), while its two products are "
        f"{100 * base['attention_flop_share']:.1f}% of the steady window's matmul FLOPs: what bounds that "
        "part of the step is the memory traffic of the B x H x L x L fp32 scores, probabilities and masks "
        "(written and read several times per layer), not arithmetic.",
        "",
        f"One converged run on {run['cores']} cores (`{Path(CONVERGED_RUN).name}`, timed by the harness): "
        f"training {run['train']:.0f} s, evaluation of all {run['targets']} targets {run['eval']:.0f} s, "
        f"{(run['train'] + run['eval']) / 60:.1f} min in all.",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--method", default="spt")
    parser.add_argument("--profile-steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every training lever")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    wl.add_process_options(parser)
    args = parser.parse_args(argv)
    if wl.done_without_measuring(args, WORKERS, render):
        return 0
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps must be > {WARMUP_STEPS} (the warm-up steps)")
    results = measure(args.steps, args.method, args.profile_steps, args.repeats)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.write_text(render(results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
