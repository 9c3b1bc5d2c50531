#!/usr/bin/env bash
# AfriSenti on the embedded backbone: sources the four CC100 ("seen") languages with training data (amh, hau,
# por, swa), all 14 languages as targets (orm and tir are test-only), budget `quick`. Controls (zero-shot,
# head-only) and SPT/XPE, seed 1 by default (34,307 test tweets per run). Resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/afrisenti}
OUT=leaderboards/results/afrisenti-me5-small-seen
common=(--task afrisenti --sources seen-with-train --targets all --budget quick --runs-dir "$RUNS")

for method in zero-shot head-only spt xpe; do
  xpe-bench run "${common[@]}" --method "$method" --seed "${SEEDS:-1}"
done

xpe-bench export "$RUNS"/* --out "$OUT"
xpe-bench leaderboard "$OUT" --reference spt \
  --group unseen-with-train --group test-only --group seen --group unseen --group all \
  --out leaderboards/afrisenti-me5-small-seen.md
