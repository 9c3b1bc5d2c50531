"""Check that runs of a budget cut from the learning curves are those curves' prefixes (docs/budgets.md).

    python benchmarks/curves/check_prefix.py RUNS... [--curves FOLDER...]   (default: results/* beside it)

`standard` differs from the curves' recipe only in ``max_steps`` (a constant learning rate after a warm-up in
steps), so a run at it must reproduce, evaluation for evaluation, the first ``max_steps`` steps of the curve
of the same method, seed, backbone and data, with the selected checkpoint and the verdict the curve predicts
(:func:`xpe_bench.curves.prefix_departures`). For every given run (run directories, compact files or folders
of them) with a matching curve this prints one line, and it exits 1 if any run departs from its curve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xpe_bench.curves import load_curves, prefix_departures, prefix_key

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--curves", type=Path, nargs="+", help="folders of curve runs (default: every task's under results/)"
    )
    args = parser.parse_args(argv)
    folders = args.curves or sorted(path for path in (HERE / "results").iterdir() if path.is_dir())
    curves = {prefix_key(curve): curve for curve in load_curves(folders)[0]}
    failed = checked = 0
    for run in load_curves(args.runs)[0]:
        curve = curves.get(prefix_key(run))
        if curve is None:
            continue
        checked += 1
        problems = prefix_departures(run, curve)
        failed += bool(problems)
        verdict = run.convergence
        print(
            f"{run.run.name}: {'; '.join(problems) or 'exact prefix'} of {curve.run.name} "
            f"({len(run.history)} evaluations; {verdict.status}, selected step {verdict.selected_step}, "
            f"dev {100 * (verdict.selected_dev_accuracy or 0):.1f}%)"
        )
    print(f"{checked} run(s) with a curve, {failed} departing from it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
