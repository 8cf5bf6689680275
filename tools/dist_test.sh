#!/usr/bin/env bash
# Distributed testing with torchrun (one process per GPU).
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
#
# Multi-node (NNODES, NODE_RANK, MASTER_ADDR, PORT), CPU (gloo) and PYTHON:
# see tools/dist_run.sh, which launches the processes.
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_run.sh" test.py "$3" \
    "$1" "$2" --launcher pytorch "${@:4}"
