"""Check `xpe-bench compare --test mcnemar` against statsmodels on two stored runs.

    python benchmarks/check_mcnemar.py RUN_A RUN_B

RUN_A and RUN_B are run directories or compact ``*.json.gz`` files (e.g. the committed ones under
``leaderboards/results/``), one seed each. The script runs the CLI's JSON output in a subprocess, then
recomputes every language's exact McNemar p-value with ``statsmodels.stats.contingency_tables.mcnemar`` and
the Holm adjustment with ``statsmodels.stats.multitest.multipletests`` from the stored predictions, and
prints the largest disagreement. Only the reading of the stored files is shared with xpe-bench; the
statistics are statsmodels'. Exit status 1 when any p-value differs by more than 1e-12.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from xpe_bench.comparison import load_run

TOLERANCE = 1e-12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)

    command = [
        *(sys.executable, "-m", "xpe_bench", "compare", str(args.run_a), str(args.run_b)),
        *("--test", "mcnemar", "--correction", "holm", "--format", "json"),
    ]
    ours = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    rows = {row["language"]: row for row in ours["rows"]}

    a, b = load_run(args.run_a), load_run(args.run_b)
    raw: dict[str, float] = {}
    for lang in rows:
        items_a, items_b = a.predictions[lang], b.predictions[lang]
        where_b = {item: k for k, item in enumerate(items_b.ids)}
        shared = [(k, where_b[item]) for k, item in enumerate(items_a.ids) if item in where_b]
        ka, kb = (np.array(side) for side in zip(*shared, strict=True))
        if not np.array_equal(items_a.gold[ka], items_b.gold[kb]):
            raise SystemExit(f"{lang}: the two runs disagree on gold labels")
        right_a = items_a.pred[ka] == items_a.gold[ka]
        right_b = items_b.pred[kb] == items_b.gold[kb]
        table = [
            [int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
            [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))],
        ]
        raw[lang] = float(mcnemar(table, exact=True).pvalue)

    langs = list(rows)
    holm = multipletests([raw[lang] for lang in langs], method="holm")[1]
    worst_raw = max(abs(raw[lang] - rows[lang]["p_value"]) for lang in langs)
    worst_holm = max(abs(float(h) - rows[lang]["adjusted_p"]) for lang, h in zip(langs, holm, strict=True))
    smallest = min(langs, key=lambda lang: raw[lang])
    print(f"{ours['a']['label']} vs {ours['b']['label']}: {len(langs)} languages")
    print(f"max |p(xpe-bench) - p(statsmodels)| = {worst_raw:.1e}; Holm-adjusted: {worst_holm:.1e}")
    print(f"smallest p: {smallest} {raw[smallest]:.3g} (Holm {rows[smallest]['adjusted_p']:.3g})")
    return 0 if max(worst_raw, worst_holm) <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
