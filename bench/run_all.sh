#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md, in order (about 80 minutes on 2 CPU cores). Run alone on the
# machine: the throughput figures are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/rewards_throughput.py
$PY bench/ladder_throughput.py
$PY bench/trainer_overhead.py
$PY bench/demo_seeds.py --seeds 0 1 2
$PY bench/ablation.py --seeds 0 1 2 --steps 80
