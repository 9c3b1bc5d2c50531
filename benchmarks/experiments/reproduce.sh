#!/usr/bin/env bash
# Rebuild a committed leaderboard from scratch with one command: runs its sweep file with the local launcher
# (one job at a time: the runs share 2 CPU cores), waits, collecting each compact result into
# leaderboards/results/ as its run finishes, and regenerates the board. Resumable: finished runs are
# skipped (those with a run directory here, and those whose compact result is already committed in
# leaderboards/results/, as in a fresh clone), an interrupted one continues from its last checkpoint, so
# after an interruption run the same command again.
#   benchmarks/experiments/reproduce.sh sib200-joshi5-standard | sib200-enarzho-standard |
#     nusax-senti-standard | afrisenti-standard | afrisenti-long | sib200-joshi5 | nusax-senti | afrisenti
# (the *-standard studies run at the converged budget, afrisenti-long at twice its steps; the others are the
# earlier `quick` boards.)
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: reproduce.sh sib200-joshi5-standard|sib200-enarzho-standard|nusax-senti-standard|afrisenti-standard|afrisenti-long|sib200-joshi5|nusax-senti|afrisenti}
sweep=benchmarks/experiments/$name.toml
case $name in
  sib200-joshi5-standard) board=sib200-me5-small-joshi5-standard ;;
  sib200-enarzho-standard) board=sib200-me5-small-enarzho-standard ;;
  sib200-joshi5) board=sib200-me5-small-joshi5 ;;
  nusax-senti-standard) board=nusax-senti-me5-small-high-standard ;;
  nusax-senti) board=nusax-senti-me5-small-high ;;
  afrisenti-standard) board=afrisenti-me5-small-seen-standard ;;
  afrisenti-long) board=afrisenti-me5-small-seen-long ;;
  afrisenti) board=afrisenti-me5-small-seen ;;
  *) echo "unknown board $name" >&2; exit 2 ;;
esac
out=leaderboards/results/$board

# --collect: each run's compact result lands in $out as it finishes (commit them as they come)
xpe-bench sweep submit "$sweep" --launcher local --max-parallel 1 --wait --collect "$out"
case $name in
  sib200-enarzho-standard)  # no GPT replays in this study, so no published column to set beside them
    xpe-bench leaderboard "$out" --reference spt --out "leaderboards/$board.md" ;;
  sib200-*)
    xpe-bench leaderboard "$out" --reference spt --published sib200-paper-gpt-accuracy.csv \
      --out "leaderboards/$board.md" ;;
  nusax-senti | nusax-senti-standard)
    xpe-bench leaderboard "$out" --reference spt --group local --group local-seen --group unseen --group all \
      --out "leaderboards/$board.md" ;;
  afrisenti | afrisenti-standard | afrisenti-long)
    xpe-bench leaderboard "$out" --reference spt \
      --group unseen-with-train --group test-only --group seen --group unseen --group all \
      --out "leaderboards/$board.md" ;;
esac
