"""Whether this CPU computes bf16 at speed: the check behind ``--precision auto`` and the slow-bf16 note.

torch computes a bf16 matmul on CPU with oneDNN where the CPU has bf16 instructions (AVX-512 BF16, AMX);
on a CPU without them (AVX2 only) it falls back to a reference loop. On such a machine (AMD EPYC, AVX2) a
2048^3 bf16 matmul ran at 0.3 GFLOP/s against fp32's 117, and a ``quick`` run (bf16 autocast, bf16 frozen
backbone) took about a minute a step. A budget's precision is part of its recipe and of every run's
identity, so a budget that asks for bf16 keeps it; this module measures what that costs here, so that a run
says so before it starts, and resolves ``auto`` to numerics this machine computes fast.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xpe_bench.budgets import Budget

AUTO = "auto"

SLOW_FACTOR = 4.0
"""bf16 counts as slow when a bf16 matmul takes this many times as long as an fp32 one. With bf16 kernels it
takes about half as long; the fallback takes hundreds of times as long, so the threshold is not delicate."""

_SIZE = 256  # 34 MFLOP a matmul: well under a millisecond natively, about 0.1 s on the fallback

_BF16_FIELDS = ("precision", "frozen_backbone_dtype")


@functools.cache
def bf16_slowdown() -> float:
    """How many times as long a bf16 matmul takes as an fp32 one on this CPU (measured once per process)."""
    import torch

    def fastest(dtype: torch.dtype, repeats: int) -> float:
        a = torch.randn(_SIZE, _SIZE).to(dtype)
        b = torch.randn(_SIZE, _SIZE).to(dtype)
        times = []
        for _ in range(repeats + 1):  # the first call carries one-off costs (kernel selection, allocation)
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    return fastest(torch.bfloat16, 2) / fastest(torch.float32, 5)


def bf16_is_slow() -> bool:
    return bf16_slowdown() >= SLOW_FACTOR


def resolve(value: str | None, budget_value: str) -> str | None:
    """A ``--precision``/``--frozen-backbone-dtype`` override with ``auto`` resolved.

    ``auto`` keeps the budget's own value (no override, so the run is the preset's) unless that value is
    ``bf16`` and this CPU computes bf16 slowly; then it is ``fp32``. Other values pass through unchanged."""
    if value != AUTO:
        return value
    return "fp32" if budget_value == "bf16" and bf16_is_slow() else None


def slow_bf16_note(budget: Budget) -> str | None:
    """What to tell the user before a run whose budget asks for bf16 on a CPU that computes it slowly."""
    asked = [f"{name}=bf16" for name in _BF16_FIELDS if getattr(budget, name) == "bf16"]
    if not asked or not bf16_is_slow():
        return None
    import torch

    kernels = torch.backends.cpu.get_cpu_capability()
    return (
        f"budget {budget.name} computes in bf16 ({', '.join(asked)}), which this CPU does slowly: a bf16 "
        f"matmul takes {bf16_slowdown():.0f}x as long as an fp32 one here (torch's CPU kernels: {kernels}, "
        "no bf16 instructions), so expect many times the budget's usual time; --precision auto "
        "--frozen-backbone-dtype auto computes in fp32 instead (a different run, with its own identity)"
    )
