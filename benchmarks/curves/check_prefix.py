"""Check that runs of a budget cut from the learning curves are those curves' prefixes (docs/budgets.md).

    python benchmarks/curves/check_prefix.py RUNS... [--curves benchmarks/curves/results]

`standard` differs from the curves' recipe only in ``max_steps`` (a constant learning rate after a warm-up in
steps), so a run at it must reproduce, evaluation for evaluation, the first ``max_steps`` steps of the curve
of the same method, seed, sources and data: the same dev accuracy and loss at every evaluation, the same
selected checkpoint and the same convergence verdict as ``convergence.assess_prefix`` predicts from the
curve. For every given run (run directories, compact files or folders of them) with a matching curve, this
prints one line saying whether that holds, and exits 1 if any run departs from its curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xpe_bench.convergence import assess_prefix
from xpe_bench.curves import Curve, load_curves

HERE = Path(__file__).resolve().parent


def _match_key(curve: Curve) -> tuple[object, ...]:
    """What must be equal for a run to be a curve's prefix, besides the budget's recipe: the method and its
    options, the seed, the backbone and the exact training and dev examples."""
    record = curve.run.record
    options = json.dumps(dict(record.method.options), sort_keys=True)
    data = (record.data.train_ids_sha256, record.data.dev_ids_sha256)
    return (record.task.name, record.method.name, options, record.seed, record.backbone.name, data)


def check(run: Curve, curve: Curve) -> list[str]:
    """What departs between ``run`` and the first ``max_steps`` of ``curve`` (nothing: an exact prefix)."""
    steps = int(run.run.record.budget.settings["max_steps"])
    problems = []
    prefix = [point for point in curve.history if point["step"] <= steps]
    fields = ("step", "dev_accuracy", "dev_loss", "train_loss")
    got = [tuple(point.get(name) for name in fields) for point in run.history]
    want = [tuple(point.get(name) for name in fields) for point in prefix]
    if got != want:
        pairs = enumerate(zip(got, want, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
        problems.append(f"dev curves differ from evaluation {first + 1} ({len(got)} vs {len(want)} points)")
    predicted = assess_prefix(curve.history, steps, select_best=curve.select_best)
    verdict = run.convergence
    if (verdict.status, verdict.selected_step) != (predicted.status, predicted.selected_step):
        problems.append(
            f"verdict {verdict.status} at step {verdict.selected_step}, the curve predicts "
            f"{predicted.status} at step {predicted.selected_step}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--curves", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    curves = {_match_key(curve): curve for curve in load_curves([args.curves])[0]}
    runs, _ = load_curves(args.runs)
    failed = checked = 0
    for run in runs:
        curve = curves.get(_match_key(run))
        if curve is None:
            continue
        checked += 1
        problems = check(run, curve)
        failed += bool(problems)
        verdict = run.convergence
        status = "; ".join(problems) if problems else "exact prefix"
        print(
            f"{run.run.name}: {status} of {curve.run.name} ({len(run.history)} evaluations; {verdict.status},"
            f" selected step {verdict.selected_step}, dev {100 * (verdict.selected_dev_accuracy or 0):.1f}%)"
        )
    print(f"{checked} run(s) with a curve, {failed} departing from it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
