#!/usr/bin/env bash
# Learning curves behind the converged CPU budget `standard` (docs/budgets.md): the sweep TASK.toml with the
# local launcher (one job at a time), collecting each run's compact result into
# benchmarks/curves/results/TASK/ as it finishes, then the curves (PNG + Markdown + JSON) into
# benchmarks/curves/TASK-curves.*. About 30-60 min per run on a quiet 2-core machine; resumable: every run
# checkpoints at each evaluation, so after an interruption run this again (it also attaches to a sweep
# still running).
#   bash benchmarks/curves/run.sh [sib200|nusax-senti]      (default sib200)
set -euo pipefail
cd "$(dirname "$0")/../.."
task=${1:-sib200}
case $task in
  sib200 | nusax-senti) ;;
  *) echo "no learning-curve sweep for '$task': use sib200 or nusax-senti" >&2; exit 2 ;;
esac
sweep=benchmarks/curves/$task.toml
results=benchmarks/curves/results/$task
xpe-bench sweep submit "$sweep" --launcher local --max-parallel 1 --wait --collect "$results"
xpe-bench curves "$results" --out "benchmarks/curves/$task-curves.png"
