"""Compact, committable copies of finished runs (tens of kilobytes each).

A run directory holds the trained state and every class score: too bulky for git. A compact file keeps what
statistics and leaderboards need — the run record (:mod:`xpe_bench.run_record`, under ``"manifest"``),
per-language metrics and every test item's gold and predicted label — as deterministic gzip-compressed JSON
(``<run-name>.json.gz``). Labels are written as one character per item (``0``-``9``, ``-`` for an
abstention) when a task has at most ten labels. A language whose predictions hold ties at the top score
(:mod:`xpe_bench.metrics`) also has ``tied``: item id -> the tied labels; it is left out when there are
none, so files without ties read as before.

``compare`` and ``leaderboard`` read compact files exactly like run directories
(:func:`xpe_bench.comparison.load_run`).
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any

from xpe_bench.errors import UserInputError
from xpe_bench.metrics import ABSTAIN
from xpe_bench.run_record import canonical_json
from xpe_bench.store import RunStore, atomic_write_bytes

FORMAT = "xpe-bench-compact/1"
SUFFIX = ".json.gz"


def encode_labels(labels: list[int], num_labels: int) -> str | list[int]:
    if num_labels > 10:
        return labels
    return "".join("-" if label == ABSTAIN else str(label) for label in labels)


def decode_labels(encoded: str | list[int]) -> list[int]:
    if isinstance(encoded, list):
        return encoded
    return [ABSTAIN if char == "-" else int(char) for char in encoded]


def export_run(run_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/<run-name>.json.gz`` for a finished run; returns its path."""
    store = RunStore(run_dir)
    record = store.read_record()
    if record is None or record.status != "complete":
        raise UserInputError(f"{run_dir} is not a finished run (no complete run record)")
    num_labels = len(record.task.labels)
    predictions = {}
    for lang in store.predicted_languages():
        rows = store.read_predictions(lang)
        predictions[lang] = {
            "ids": [row["id"] for row in rows],
            "gold": encode_labels([row["gold"] for row in rows], num_labels),
            "pred": encode_labels([row["pred"] for row in rows], num_labels),
        }
        tied = {str(row["id"]): row["tied"] for row in rows if "tied" in row}
        if tied:
            predictions[lang]["tied"] = tied
    payload = {
        "format": FORMAT,
        "manifest": record.to_dict(),
        "metrics": store.read_metrics(),
        "predictions": predictions,
    }
    buffer = io.BytesIO()
    # mtime=0 and no file name: the same run always compresses to the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        handle.write(canonical_json(payload).encode("utf-8"))
    path = out_dir / f"{run_dir.name}{SUFFIX}"
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_compact(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # EOFError: a truncated gzip stream
        raise UserInputError(f"{path} is not a compact run file: {exc}") from exc
    if payload.get("format") != FORMAT:
        raise UserInputError(f"{path}: unknown compact format {payload.get('format')!r}; expected {FORMAT}")
    return payload
