#!/bin/bash
#SBATCH --job-name=synthseg-bids
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=synthseg-bids_%A_%a.log
#
# One SLURM array task per participant of a BIDS dataset, all writing the same output folder.
#
#   sbatch --array=1-N singularity/slurm_array_job.sh BIDS_DIR OUTPUT_DIR WORK_DIR [synthseg-bids options]
#
# Task i segments the i-th sub-* folder of BIDS_DIR (sorted; N = how many there are).
# With SYNTHSEG_SIF=/path/to/synthseg-bids.sif set, the app runs in Apptainer (on GPU nodes:
# the GPU image synthseg-bids-gpu.sif, SYNTHSEG_APPTAINER_ARGS="--nv" and sbatch --gres=gpu:1);
# otherwise the synthseg-bids found on PATH (e.g. a virtual environment with the gpu extra). Each task has its own work folder under WORK_DIR. A task
# that finds its participant already done (same input and model) exits quickly, so the
# same array can be resubmitted after failures. Then, once:  synthseg-bids BIDS_DIR OUTPUT_DIR group
set -euo pipefail

if [ "$#" -lt 3 ] || [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "usage: sbatch --array=1-N $0 BIDS_DIR OUTPUT_DIR WORK_DIR [synthseg-bids options]" >&2
    exit 2
fi
bids=$(realpath "$1")
out=$(realpath -m "$2")
work=$(realpath -m "$3")
shift 3

shopt -s nullglob
folders=("$bids"/sub-*/)
if [ "$SLURM_ARRAY_TASK_ID" -lt 1 ] || [ "$SLURM_ARRAY_TASK_ID" -gt "${#folders[@]}" ]; then
    echo "synthseg-bids: error: array task $SLURM_ARRAY_TASK_ID but $bids has ${#folders[@]} participants" >&2
    exit 1
fi
subject=$(basename "${folders[$((SLURM_ARRAY_TASK_ID - 1))]}")
subject=${subject#sub-}
task_work="$work/${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}_$SLURM_ARRAY_TASK_ID"
threads=${SLURM_CPUS_PER_TASK:-1}
mkdir -p "$out" "$task_work"
echo "task $SLURM_ARRAY_TASK_ID: sub-$subject on $(hostname), $threads CPU(s)"

if [ -n "${SYNTHSEG_SIF:-}" ]; then
    # shellcheck disable=SC2086  # SYNTHSEG_APPTAINER_ARGS is a list of options
    exec apptainer run --cleanenv ${SYNTHSEG_APPTAINER_ARGS:-} \
        -B "$bids:/data:ro" -B "$out:/out" -B "$task_work:/work" "$SYNTHSEG_SIF" \
        /data /out participant --participant-label "$subject" -w /work --nprocs "$threads" "$@"
fi
exec synthseg-bids "$bids" "$out" participant --participant-label "$subject" -w "$task_work" \
    --nprocs "$threads" "$@"
