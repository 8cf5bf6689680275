#!/usr/bin/env bash
# Training on a SLURM cluster (one task per GPU, any number of nodes).
#
#   [GPUS=16 GPUS_PER_NODE=8] tools/slurm_train.sh PARTITION JOB_NAME \
#       CONFIG WORK_DIR [tools/train.py options]
#
# GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS and PYTHON: see
# tools/slurm_run.sh, which launches the tasks.
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [options]" >&2
    exit 2
fi
exec "$(dirname "$0")/slurm_run.sh" "$1" "$2" train.py \
    "$3" --work-dir="$4" --launcher="slurm" "${@:5}"
