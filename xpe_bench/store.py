"""The results store: one directory per run, written atomically, resumable.

Layout of a run directory::

    manifest.json            config, budget, seed, hashes, versions, hardware, timings, status
    state.safetensors        the trained state (trainable tensors only)
    fit/                     training checkpoints while a fit is in progress (removed when it finishes)
    predictions/<lang>.jsonl one line per test item: id, gold, pred, scores (and tied, for a tie at the top)
    metrics.json             per-language accuracy, macro-F1 and n (derived from the predictions)

A run's identity is the hash of everything that decides its *trained state* (task, method and options,
backbone weights, budget, sources, seed, regime) — not its targets: asking for more target languages later
reuses the trained state and only predicts the new languages. Every file is written to a temporary name and
renamed into place, so a crash never leaves a truncated file; finished predictions are never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xpe_bench.metrics import ABSTAIN, abstained, language_metrics, tied_labels

MANIFEST = "manifest.json"
STATE = "state.safetensors"
METRICS = "metrics.json"
PREDICTIONS = "predictions"
FIT_DIR = "fit"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp's private 0600 would make shared results unreadable to others
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


class RunStore:
    """One run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_identity(cls, runs_dir: Path, identity: Mapping[str, Any], label: str) -> RunStore:
        return cls(runs_dir / f"{label}-{config_key(identity)[:12]}")

    # manifest -----------------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / MANIFEST, dict(manifest))

    # trained state ------------------------------------------------------------------------------------
    @property
    def has_state(self) -> bool:
        return (self.path / STATE).exists()

    def save_state(self, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".state.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(dict(state), tmp, metadata=dict(metadata))
            os.replace(tmp, self.path / STATE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_state(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / STATE)

    @property
    def fit_dir(self) -> Path:
        path = self.path / FIT_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear_fit_dir(self) -> None:
        shutil.rmtree(self.path / FIT_DIR, ignore_errors=True)

    # predictions --------------------------------------------------------------------------------------
    def predictions_path(self, lang: str) -> Path:
        return self.path / PREDICTIONS / f"{lang}.jsonl"

    def predicted_languages(self) -> list[str]:
        folder = self.path / PREDICTIONS
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.exists() else []

    def write_predictions(
        self, lang: str, ids: Sequence[str], gold: Sequence[int], scores: np.ndarray
    ) -> None:
        """Store one language's predictions; an all ``-inf`` row is an abstention, stored as ``pred = -1``.

        A top score shared by several labels is a tie (:mod:`xpe_bench.metrics`): ``pred`` is the first of
        them and ``tied`` lists them all. Ties are found on the scores as given, before the stored scores are
        rounded (rounding must not create ties).
        """
        predicted = np.where(abstained(scores), ABSTAIN, scores.argmax(axis=1))
        ties = tied_labels(scores)
        lines = []
        for row, (i, g, p, values) in enumerate(zip(ids, gold, predicted, scores, strict=True)):
            line: dict[str, Any] = {
                "id": i,
                "gold": int(g),
                "pred": int(p),
                "scores": [round(float(s), 6) if np.isfinite(s) else None for s in values],
            }
            if row in ties:
                line["tied"] = list(ties[row])
            lines.append(canonical_json(line))
        atomic_write_bytes(self.predictions_path(lang), ("\n".join(lines) + "\n").encode("utf-8"))

    def read_predictions(self, lang: str) -> list[dict[str, Any]]:
        with self.predictions_path(lang).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    # metrics ------------------------------------------------------------------------------------------
    def compute_metrics(self, num_labels: int) -> dict[str, dict[str, float]]:
        """Per-language metrics from the stored predictions (the predictions are the source of truth)."""
        metrics = {}
        for lang in self.predicted_languages():
            rows = self.read_predictions(lang)
            gold = np.array([r["gold"] for r in rows])
            pred = np.array([r["pred"] for r in rows])
            tied = {row: r["tied"] for row, r in enumerate(rows) if "tied" in r}
            metrics[lang] = language_metrics(gold, pred, num_labels, tied)
        return metrics

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / METRICS, dict(metrics))

    def read_metrics(self) -> dict[str, Any]:
        path = self.path / METRICS
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
