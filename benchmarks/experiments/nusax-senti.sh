#!/usr/bin/env bash
# NusaX-Senti on the embedded backbone: sources English + Indonesian (the task's `high` group, Joshi 5 and 3),
# all 12 languages as targets (the 10 local languages are the zero-shot targets), budget `quick`.
# Controls (zero-shot, head-only) once, SPT and XPE with seeds 1-3. Resumable: start it again after an
# interruption. Minutes per run on 2 CPU cores (400 test sentences per language).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/nusax-senti}
OUT=leaderboards/results/nusax-senti-me5-small-high
common=(--task nusax-senti --sources high --targets all --budget quick --runs-dir "$RUNS")

for method in zero-shot head-only; do
  xpe-bench run "${common[@]}" --method "$method" --seed 1
done
for method in spt xpe; do
  xpe-bench run "${common[@]}" --method "$method" --seed "${SEEDS:-1,2,3}"
done

xpe-bench export "$RUNS"/* --out "$OUT"
xpe-bench leaderboard "$OUT" --reference spt --group local --group local-seen --group unseen --group all \
  --out leaderboards/nusax-senti-me5-small-high.md
