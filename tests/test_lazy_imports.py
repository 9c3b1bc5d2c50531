"""Listings, ``compare`` and ``leaderboard`` never import torch, transformers or datasets (issue #13).

Each check runs in a fresh interpreter: the test process itself has imported torch long before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "leaderboards" / "results" / "sib200-me5-small-joshi5"
HEAVY = ("torch", "transformers", "datasets")

_PROBE = """
import json, sys
from xpe_bench.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
print(json.dumps(sorted(name for name in {heavy} if name in sys.modules)), file=sys.stderr)
"""


def _heavy_modules_after(commands: list[list[str]], cwd: Path) -> list[str]:
    """The heavy modules loaded after running ``commands`` (each a CLI argument list) in one interpreter."""
    probe = _PROBE.format(heavy=repr(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(commands)], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_listings_import_no_torch(tmp_path):
    listings = [
        ["tasks"],
        ["methods"],
        ["plugins"],
        ["budgets"],
        ["backbones"],
        ["languages", "--task", "sib200", "--groups"],
        ["methods", "--format", "json"],
        ["methods", "spt", "lora", "zero-shot"],
    ]
    assert _heavy_modules_after(listings, tmp_path) == []


def test_the_probe_sees_torch_when_it_is_imported(tmp_path):
    """The check above can fail: ``inspect`` builds a model, so torch is loaded after it."""
    inspect = ["inspect", "--method", "spt", "--backbone", "tiny-random", "--random-init"]
    assert "torch" in _heavy_modules_after([inspect], tmp_path)


def test_compare_and_leaderboard_on_compact_files_import_no_torch(tmp_path):
    spt, xpe = (
        sorted(RESULTS.glob(f"sib200-{method}-me5-small-quick-s1-*.json.gz"))[0] for method in ("spt", "xpe")
    )
    commands = [
        ["compare", str(spt), str(xpe)],
        ["leaderboard", str(spt), str(xpe), "--out", str(tmp_path / "board.md")],
    ]
    assert _heavy_modules_after(commands, tmp_path) == []
    assert (tmp_path / "board.md").read_text().strip()
