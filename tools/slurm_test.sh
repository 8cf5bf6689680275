#!/usr/bin/env bash
# Testing on a SLURM cluster (one task per GPU, any number of nodes).
#
#   [GPUS=8 GPUS_PER_NODE=8] tools/slurm_test.sh PARTITION JOB_NAME \
#       CONFIG CHECKPOINT [tools/test.py options]
#
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS and PYTHON: see
# tools/slurm_run.sh, which launches the tasks.
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [options]" >&2
    exit 2
fi
exec "$(dirname "$0")/slurm_run.sh" "$1" "$2" test.py \
    "$3" "$4" --launcher="slurm" "${@:5}"
