#!/usr/bin/env bash
# Observe-R1 on Qwen2.5-VL-3B, one node with 8 GPUs (docs/method.md §6). Run from the repository root.
#   NUM_GPUS=8 bash scripts/train_3b.sh                 # single node
#   NUM_MACHINES=2 MACHINE_RANK=0 MAIN_IP=10.0.0.1 NUM_GPUS=16 bash scripts/train_3b.sh   # on each node
set -euo pipefail
NUM_GPUS=${NUM_GPUS:-8}
NUM_MACHINES=${NUM_MACHINES:-1}
MACHINE_RANK=${MACHINE_RANK:-0}
MAIN_IP=${MAIN_IP:-127.0.0.1}
RECIPE=${RECIPE:-recipes/observe_r1_qwen2_5_vl_3b.yaml}
accelerate launch --config_file recipes/accelerate/zero2.yaml \
    --num_processes "$NUM_GPUS" --num_machines "$NUM_MACHINES" --machine_rank "$MACHINE_RANK" \
    --main_process_ip "$MAIN_IP" --main_process_port 29500 \
    -m observe_r1.cli train --config "$RECIPE" "$@"
