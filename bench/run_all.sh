#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md, in order (about 3 hours on 2 CPU cores). Run alone on the
# machine: the throughput figures are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/rewards_throughput.py
$PY bench/ladder_throughput.py
$PY bench/trainer_overhead.py
$PY bench/demo_seeds.py --seeds 0 1 2 3 4
$PY bench/dynamic_sampling.py --seeds 0 1 2
$PY bench/ablation.py --seeds 0 1 2 3 4 --out bench/results/curriculum_memory \
    --paired-against observe_r1_paced_ds observe_r1_paced_ds_fast
$PY bench/pace_trace.py --demo-dir bench/results/demo --ablation-dir bench/results/curriculum_memory \
    --variants observe_r1 observe_r1_paced observe_r1_paced_ds --seeds 0 1 2 3 4 --out bench/results/curriculum_memory
$PY bench/lora_memory.py
# Real benchmark files (clone the authors' repositories; skipped when the paths are not set):
#   MATHV=/path/to/MATH-V MATHVISTA=/path/to/MathVista bash bench/run_all.sh
if [ -n "${MATHV:-}" ]; then $PY bench/memory.py --benchmark "$MATHV/data/test.jsonl"; fi
if [ -n "${MATHVISTA:-}" ]; then $PY bench/mathvista_agreement.py --benchmark "$MATHVISTA/data/testmini.json"; fi
