#!/usr/bin/env bash
# Learning curves on SIB-200 (Joshi-5 sources): spt and xpe at seeds 1-2, dual-30 at seed 1, 2,000 steps each
# under benchmarks/curves/curves.toml. Hours on 2 CPU cores; resumable: every run checkpoints at each
# evaluation and finished runs are reused, so start the same command again after an interruption. Each finished
# run is exported at once to benchmarks/curves/results/ (compact, committable); then the curves are drawn.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/sib200-curves}
OUT=benchmarks/curves/results
common=(--task sib200 --sources joshi5 --targets showcase --budget benchmarks/curves/curves.toml --runs-dir "$RUNS")

for job in spt:1 xpe:1 dual-30:1 spt:2 xpe:2; do
  method=${job%%:*} seed=${job##*:}
  xpe-bench run "${common[@]}" --method "$method" --seed "$seed"
  xpe-bench export "$RUNS"/sib200-"$method"-*-s"$seed"-* --out "$OUT"
done
