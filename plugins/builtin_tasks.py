"""Registers the task definitions shipped in ``tasks/``."""

from __future__ import annotations

from xpe_bench.hookspecs import hookimpl
from xpe_bench.tasks import TaskSpec, builtin_task_specs


@hookimpl
def xpe_bench_tasks() -> list[TaskSpec]:
    return builtin_task_specs()
