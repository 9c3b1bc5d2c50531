#!/usr/bin/env bash
# Learning curves behind the choice of a converged CPU budget (issue #12): the sweep in sweep.toml with the
# local launcher (one job at a time), then the compact results into benchmarks/curves/results/ and the curves
# (PNG + Markdown + JSON) into benchmarks/curves/sib200-curves.*. About an hour per run on a quiet 2-core
# machine; resumable: every run checkpoints at each evaluation, so after an interruption run this again.
set -euo pipefail
cd "$(dirname "$0")/../.."
xpe-bench sweep submit benchmarks/curves/sweep.toml --launcher local --max-parallel 1 --wait
xpe-bench sweep collect benchmarks/curves/sweep.toml --out benchmarks/curves/results
xpe-bench curves benchmarks/curves/results --out benchmarks/curves/sib200-curves.png
