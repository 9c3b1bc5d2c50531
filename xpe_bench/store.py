"""The results store: one directory per run, written atomically, resumable.

Layout of a run directory::

    manifest.json            the run record (:mod:`xpe_bench.run_record`): config, budget, seed, hashes,
                             versions, hardware, timings, status
    state.safetensors        the trained state (trainable tensors only; the fit report in its metadata)
    fit/                     training checkpoints while a fit is in progress (removed when it finishes)
    predictions/<lang>.jsonl one line per test item: id, gold, pred, scores (and tied, for a tie at the top)
    metrics.json             per-language accuracy, macro-F1 and n (derived from the predictions)
    run.lock, run.owner.json the lock a live run holds, and who holds it
    quarantine/              corrupt files moved out of the way (kept as evidence, never read)

A run's identity is the hash of everything that decides its *trained state* (task, method and options,
backbone weights, budget, sources, seed, regime) — not its targets: asking for more target languages later
reuses the trained state and only predicts the new languages. Every file is written to a temporary name and
renamed into place, so a crash never leaves a truncated file; finished predictions are never rewritten.
Everything is read back as JSON or safetensors (nothing that can execute code) and validated on reading: a
corrupt or foreign file raises :class:`CorruptRunFile`, naming it. A run directory is written only under its
lock (:meth:`RunStore.locked`): a second identical run reports who holds it instead of interleaving writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout
from safetensors import SafetensorError

from xpe_bench.errors import CorruptRunFile
from xpe_bench.metrics import ABSTAIN, abstained, language_metrics, tied_labels
from xpe_bench.run_record import RunRecord, canonical_json, config_key

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
STATE = "state.safetensors"
METRICS = "metrics.json"
PREDICTIONS = "predictions"
FIT_DIR = "fit"
LOCK = "run.lock"
OWNER = "run.owner.json"
QUARANTINE = "quarantine"
TEMP_SUFFIX = ".tmp"


class RunLocked(Exception):
    """Another live process holds the run directory's lock."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a unique temporary name beside ``path`` (``.<name>.<random>.tmp``), then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
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
    """Strict JSON (a NaN or infinity raises ``ValueError`` instead of writing what JSON readers reject)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRunFile(path, f"not valid JSON ({exc}); the file is truncated or corrupt") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """One run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_identity(cls, runs_dir: Path, identity: Mapping[str, Any], label: str) -> RunStore:
        return cls(runs_dir / f"{label}-{config_key(identity)[:12]}")

    # lock and housekeeping ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory's lock (created if need be); :class:`RunLocked` if a live process has it.

        The lock is an OS file lock (released by the kernel when its holder dies, even by ``kill -9``), so
        a stale lock never blocks a rerun. Its holder is recorded beside it for the message others get.
        """
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout as exc:
            raise RunLocked(f"{self.path} is in use by {self._owner()}; not started") from exc
        try:
            atomic_write_json(
                self.path / OWNER, {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            )
            yield
        finally:
            (self.path / OWNER).unlink(missing_ok=True)
            lock.release()
            if created and [p.name for p in self.path.iterdir()] == [LOCK]:
                # Nothing was written (e.g. the first write met a full disk): leave no empty run behind.
                (self.path / LOCK).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.path.rmdir()

    def is_locked(self) -> bool:
        """Whether a live process holds the lock now (without creating anything)."""
        if not (self.path / LOCK).exists():
            return False
        lock = FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def _owner(self) -> str:
        try:
            owner = json.loads((self.path / OWNER).read_text(encoding="utf-8"))
            return f"PID {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def remove_temp_files(self) -> int:
        """Delete the temporary files of interrupted writes (call under the lock: no write is live then)."""
        stale = [p for p in self.path.rglob(f".*{TEMP_SUFFIX}") if QUARANTINE not in p.parts]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def quarantine(self, path: Path) -> Path:
        """Move a corrupt file (or folder) to ``quarantine/<utc time>/`` and return where it went."""
        folder = self.path / QUARANTINE / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / path.relative_to(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target

    # run record ---------------------------------------------------------------------------------------
    def read_record(self) -> RunRecord | None:
        """The run record, or ``None`` if there is none yet; :class:`CorruptRunFile` if it is unusable."""
        path = self.path / MANIFEST
        return RunRecord.from_dict(_read_json(path), path) if path.exists() else None

    def write_record(self, record: RunRecord) -> None:
        atomic_write_json(self.path / MANIFEST, record.to_dict())

    # trained state ------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.path / STATE

    @property
    def has_state(self) -> bool:
        return self.state_path.exists()

    def save_state(self, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        from safetensors.torch import save_file  # torch only where a state is written: compare reads none

        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{STATE}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        try:
            save_file(dict(state), tmp, metadata=dict(metadata))
            os.chmod(tmp, 0o644)  # like every other file of a run (mkstemp creates 0600)
            os.replace(tmp, self.path / STATE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_state(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        try:
            return load_file(self.path / STATE)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CorruptRunFile(self.path / STATE, f"unreadable trained state ({exc})") from exc

    def state_metadata(self) -> dict[str, str]:
        """The string metadata stored with the trained state (``run_key``, ``fit`` report)."""
        path = self.path / STATE
        try:
            with path.open("rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(size)) if 0 < size <= 100_000_000 else None
        except (OSError, ValueError) as exc:
            raise CorruptRunFile(path, f"unreadable trained state ({exc})") from exc
        metadata = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(metadata, dict):
            raise CorruptRunFile(path, "unreadable trained state (no safetensors header)")
        return metadata

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

    def read_predictions(self, lang: str, expected_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One language's stored predictions, validated line by line (and against ``expected_ids``, the
        test items the task defines, when given); :class:`CorruptRunFile` names the file and the line."""
        path = self.predictions_path(lang)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise CorruptRunFile(path, f"not UTF-8 text ({exc})") from exc
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorruptRunFile(path, f"line {number} is not valid JSON ({exc}); truncated?") from exc
            if not (
                isinstance(row, dict)
                and isinstance(row.get("id"), str)
                and type(row.get("gold")) is int
                and type(row.get("pred")) is int
                and isinstance(row.get("scores"), list)
            ):
                raise CorruptRunFile(path, f"line {number} is not a prediction (id, gold, pred, scores)")
            rows.append(row)
        if not rows:
            raise CorruptRunFile(path, "no predictions in it")
        if expected_ids is not None:
            ids = [row["id"] for row in rows]
            if len(ids) != len(expected_ids):
                raise CorruptRunFile(
                    path, f"{len(ids)} predictions, but the task's test split has {len(expected_ids)} items"
                )
            if ids != list(expected_ids):
                first = next(i for i, (a, b) in enumerate(zip(ids, expected_ids, strict=True)) if a != b)
                raise CorruptRunFile(
                    path,
                    f"line {first + 1} holds item {ids[first]!r}; the task's test split has "
                    f"{expected_ids[first]!r}",
                )
        return rows

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
        metrics = _read_json(path) if path.exists() else {}
        if not isinstance(metrics, dict):
            raise CorruptRunFile(path, "not a metrics table (not a JSON object)")
        return metrics
