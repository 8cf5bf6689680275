#!/usr/bin/env bash
# The srun launch behind tools/slurm_train.sh and tools/slurm_test.sh (use
# those): one task per GPU of SCRIPT (a file in tools/) with ARGS.
#
#   [GPUS=16 GPUS_PER_NODE=8] tools/slurm_run.sh PARTITION JOB_NAME SCRIPT \
#       [ARGS...]
#
# GPUS: total number of GPUs (default 8); nodes = GPUS / GPUS_PER_NODE.
# CPUS_PER_TASK (default 5), SRUN_ARGS: extra srun arguments.
# PYTHON selects the interpreter (default: python).
set -ex
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$TOOLS_DIR/$SCRIPT" "${@:4}"
