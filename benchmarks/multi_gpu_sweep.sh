#!/usr/bin/env bash
# The sweep on a machine with 2 GPUs (the device tool's nvidia-h200-x2): the rehearsal through Snakemake with
# --resources gpu=2 against gpu=1, nvidia-smi sampled every 2 s; train_target data-parallel on 2 GPUs against 1.
# From the repository root, with the packages of `bash benchmarks/h200_site.sh h200_site workflow` carried:
#   bash benchmarks/multi_gpu_sweep.sh OUT rehearsal 2    # both styles, easy, the baseline: --resources gpu=2
#   bash benchmarks/multi_gpu_sweep.sh OUT rehearsal 1    # the same DAG, --resources gpu=1
#   bash benchmarks/multi_gpu_sweep.sh OUT train          # train_mfu.py target_bf16, num_gpus 1 and 2
#   bash benchmarks/multi_gpu_sweep.sh OUT all            # the three in turn (more than one 10-minute call)
# Writes OUT/rehearsal_gpu{N}.json (wall time, the GPU each job's log names, nvidia-smi's samples summarised),
# OUT/rehearsal_gpu{N}/ (raw samples, logs, stats JSON, Snakemake benchmarks) and OUT/train_mfu_gpu{1,2}.json
# (tokens/s, MFU, peak memory per GPU, the first steps' losses, at 4 x 1024 tokens a GPU a micro-step and the
# same global batch of 8 x 1024 tokens). Each rehearsal starts from nothing: it deletes results/, logs/, .snakemake/.
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,13p' "$0"; exit 2; }
out=$(realpath -m "$1")
part=${2:-all}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this measures GPUs" >&2; exit 1; }
export PYTHONPATH="$repo/h200_site:$repo${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
styles=${STYLES:-cot cod}  # STYLES=cod: one style, e.g. the one-GPU check on nvidia-h200 (rehearsal 1)
targets=(results/untrained_easy/benchmark.csv)
for style in $styles; do targets+=("results/${style}_easy/benchmark.csv"); done
mkdir -p "$out"

rehearsal() {
    local gpus=$1
    local dir="$out/rehearsal_gpu$gpus"
    rm -rf results logs .snakemake "$dir"
    mkdir -p "$dir"
    nvidia-smi -L > "$dir/nvidia_smi_L.txt"
    nvidia-smi --query-gpu=timestamp,index,uuid,utilization.gpu,memory.used --format=csv,noheader,nounits -l 2 \
        > "$dir/gpus.csv" &
    local gpu_sampler=$!
    nvidia-smi --query-compute-apps=timestamp,gpu_uuid,pid,used_memory --format=csv,noheader,nounits -l 2 \
        > "$dir/apps.csv" &
    local app_sampler=$!
    local run=("$python" -m snakemake "${targets[@]}" --cores 8 --resources gpu="$gpus"
               --configfile "${CONFIGFILE:-configs/rehearsal.yaml}" --config "styles=[${styles// /,}]" --scheduler greedy --keep-going)
    local start end code=0
    start=$(date +%s.%N)
    "${run[@]}" > "$dir/snakemake.log" 2>&1 || code=$?
    end=$(date +%s.%N)
    kill "$gpu_sampler" "$app_sampler"
    wait "$gpu_sampler" "$app_sampler" 2>/dev/null || true
    cp -r logs "$dir/logs" 2>/dev/null || mkdir -p "$dir/logs"
    cp -r results/benchmarks "$dir/snakemake_benchmarks" 2>/dev/null || mkdir -p "$dir/snakemake_benchmarks"
    find results \( -name train_stats.json -o -name '*.stats.json' -o -name log_history.json \) -print0 2>/dev/null |
        xargs -0 -r cp --parents -t "$dir"
    "$python" benchmarks/gpu_sampling.py --dir "$dir" --gpus "$gpus" --wall "$("$python" -c "print($end - $start)")" \
        --exit-code "$code" --command "${run[*]}" --commit "$commit" --out "$out/rehearsal_gpu$gpus.json"
}

train() {
    local gpus
    for gpus in 1 2; do
        "$python" benchmarks/train_mfu.py --variants target_bf16 --steps 10 --num-gpus "$gpus" --accumulation 2 \
            --out "$out/train_mfu_gpu$gpus.json"
    done
}

case $part in
    rehearsal) rehearsal "${3:?rehearsal needs the number of GPUs: 1 or 2}" ;;
    train) train ;;
    all) rehearsal 2; rehearsal 1; train ;;
    *) echo "unknown part '$part': rehearsal N, train or all" >&2; exit 2 ;;
esac
