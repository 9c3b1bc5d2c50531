"""A third-party task package: registers ``toy-news`` through the ``xpe_bench_tasks`` hook.

Everything the task needs lives next to this file: the task definition (``toy-news.toml``), its language
table (``languages.csv``, found next to the task file) and its data (``data/``, the task's ``data_root``).
"""

from __future__ import annotations

from pathlib import Path

from xpe_bench.api import TaskSpec, hookimpl

TASK_FILE = Path(__file__).resolve().parent / "toy-news.toml"


@hookimpl
def xpe_bench_tasks() -> list[TaskSpec]:
    return [TaskSpec.from_toml(TASK_FILE)]
