"""Where data, reference files and caches live.

Data root resolution, first match wins: ``--data-dir``, ``$XPE_BENCH_DATA``, the task's own ``data_root``
(declared in its TOML, relative to the task file), a ``shared/data`` mirror beside the project checkout
(``../shared/data`` from the repository root or from the working directory). With none of these, tasks fall
back to their Hugging Face hub datasets. Reference files (published results a board
quotes) live in a folder beside the data root: ``$XPE_BENCH_REFERENCE``, else ``reference`` beside the data
root (``../shared/reference`` for ``../shared/data``), else a ``shared/reference`` mirror beside the checkout.
Caches (converted backbones, feature caches) live outside the repository: ``$XPE_BENCH_CACHE``, default
``~/.cache/xpe-bench``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from xpe_bench.errors import UserInputError

DATA_ENV = "XPE_BENCH_DATA"
REFERENCE_ENV = "XPE_BENCH_REFERENCE"
CACHE_ENV = "XPE_BENCH_CACHE"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _sibling_mirrors() -> list[Path]:
    return [REPO_ROOT.parent / "shared" / "data", Path.cwd().resolve().parent / "shared" / "data"]


def resolve_data_root(cli_value: Path | None = None, task_root: Path | None = None) -> Path | None:
    """Return the local data root, or ``None`` when data must come from the hub.

    ``task_root`` is a task's own ``data_root``: it counts after ``--data-dir`` and ``$XPE_BENCH_DATA``,
    which override every task's, and before the mirror beside the checkout.
    """
    for origin, value in (
        ("--data-dir", cli_value),
        (f"${DATA_ENV}", os.environ.get(DATA_ENV)),
        ("the task's data_root", task_root),
    ):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise UserInputError(f"{origin}: data directory {str(path)!r} does not exist")
            return path.resolve()
    for mirror in _sibling_mirrors():
        if mirror.is_dir():
            return mirror
    return None


def resolve_reference_root(data_root: Path | None = None) -> Path | None:
    """The folder of reference files (module docstring), or ``None`` when there is none."""
    configured = os.environ.get(REFERENCE_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise UserInputError(f"${REFERENCE_ENV}: reference directory {str(path)!r} does not exist")
        return path.resolve()
    data = data_root or resolve_data_root()
    candidates = ([data.parent / "reference"] if data is not None else []) + [
        mirror.parent / "reference" for mirror in _sibling_mirrors()
    ]
    return next((path for path in candidates if path.is_dir()), None)


def cache_root() -> Path:
    """The cache directory (created on first use)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "xpe-bench").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def check_writable_dir(path: Path, option: str) -> None:
    """Fail before anything is written if ``path`` cannot become or be a writable directory.

    A missing folder is fine when its nearest existing ancestor is a writable directory (it is created on
    the first write). Nothing is created here.
    """
    path = path.expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        what = "is" if existing == path else f"lies under {str(existing)!r}, which is"
        raise UserInputError(f"{option}: {str(path)!r} {what} a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            raise UserInputError(f"{option}: {str(path)!r} is not writable; choose a folder you can write to")
        raise UserInputError(
            f"{option}: {str(path)!r} cannot be created: {str(existing)!r} is not writable; choose a folder "
            "you can write to"
        )


def safe_name_part(text: str) -> str:
    """``text`` as one harmless piece of a file name: every character but letters, digits, ``.``, ``_`` and
    ``-`` becomes ``_``, so no path separator, NUL or other surprise reaches the file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"
