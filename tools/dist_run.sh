#!/usr/bin/env bash
# The torchrun launch behind tools/dist_train.sh and tools/dist_test.sh
# (use those): one process per GPU of SCRIPT (a file in tools/) with ARGS.
#
#   tools/dist_run.sh SCRIPT GPUS [ARGS...]
#
# Multi-node: run on every node with the same MASTER_ADDR/PORT, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 tools/dist_train.sh CONFIG 8
# Without CUDA the processes run on the CPU with the gloo backend.
# PYTHON selects the interpreter (default: python).
set -e
SCRIPT=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

# The repository root on PYTHONPATH makes `projects.mask_dino` importable
# without `pip install -e .`.
PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$TOOLS_DIR/$SCRIPT" "${@:3}"
