#!/usr/bin/env bash
# Distributed training with torchrun (one process per GPU).
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# Multi-node (NNODES, NODE_RANK, MASTER_ADDR, PORT), CPU (gloo) and PYTHON:
# see tools/dist_run.sh, which launches the processes.
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py options]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_run.sh" train.py "$2" \
    "$1" --launcher pytorch "${@:3}"
