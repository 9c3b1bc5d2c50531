"""Run records by hand, for tests that write run directories without running anything.

The record is built through :meth:`RunRecord.create`, like a real run's, with placeholder provenance; only
what a test varies is a parameter. Its identity is ``{"name": name}``, so every name has its own key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from xpe_bench.run_record import MethodRecord, RunRecord, Status, TimingsRecord


def hand_made_record(
    name: str,
    *,
    task: str = "sib200",
    task_version: int = 1,
    labels: Sequence[str] = ("a", "b", "c"),
    method: str = "spt",
    options: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    backbone_sha256: str = "b" * 64,
    budget: str = "quick",
    fingerprint: str = "a" * 64,
    budget_settings: Mapping[str, Any] | None = None,
    seed: int = 1,
    sources: Sequence[str] = ("eng_Latn",),
    fit: Mapping[str, Any] | None = None,
    timings: TimingsRecord | None = None,
    status: Status = "complete",
) -> RunRecord:
    record = RunRecord.create(
        identity={"name": name},
        task={"name": task, "version": task_version, "labels": list(labels)},
        method=MethodRecord(name=method, version="1", options=dict(options or {}), parameters=parameters),
        backbone={"name": "me5-small", "weights_sha256": backbone_sha256},
        budget={"name": budget, "fingerprint": fingerprint, "max_length": 164, **(budget_settings or {})},
        seed=seed,
        regime="zero-shot-xlt",
        sources=sources,
        train_ids_sha256="0" * 64,
        dev_ids_sha256="0" * 64,
        versions={},
        git={},
        hardware={},
        command=["hand-made"],
    )
    return dataclasses.replace(record, status=status, fit=fit, timings=timings or TimingsRecord())
