#!/usr/bin/env bash
# The main comparison of the XPE paper on the embedded backbone: SIB-200, sources Joshi-5, all 205 targets,
# budget `quick`, every method, seeds 1-3 for the trained ones, and the SIB-200 authors' GPT outputs replayed
# under each scoring rule (seconds each; `strict`, the default, keeps the key of runs stored before the option
# existed). Hours on 2 CPU cores: run it in the background; it is resumable (finished runs are reused,
# interrupted ones continue), so just start it again. Afterwards: compact copies for the repository and the
# leaderboard, with the replays set beside the paper's published Table 7 (found in the reference folder beside
# the data root, or $XPE_BENCH_REFERENCE).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/sib200-joshi5}
OUT=leaderboards/results/sib200-me5-small-joshi5
common=(--task sib200 --sources joshi5 --targets all --budget quick --runs-dir "$RUNS")

for method in replay-gpt-4 replay-gpt-3.5; do
  for scoring in strict first fractional; do
    xpe-bench run "${common[@]}" --method "$method" --option scoring="$scoring" --seed 1
  done
done
xpe-bench run "${common[@]}" --method zero-shot --seed 1
for method in spt xpe head-only dual-30 dual-70 full-ft; do
  xpe-bench run "${common[@]}" --method "$method" --seed "${SEEDS:-1,2,3}"
done

xpe-bench export "$RUNS"/* --out "$OUT"
xpe-bench leaderboard "$OUT" --reference spt --published sib200-paper-gpt-accuracy.csv \
  --out leaderboards/sib200-me5-small-joshi5.md
