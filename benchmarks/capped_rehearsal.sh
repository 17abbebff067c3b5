#!/usr/bin/env bash
# The full-size rehearsal (configs/rehearsal.yaml: cod_easy and the untrained baseline, random weights) through
# Snakemake under one card's memory budget (configs/<card>.yaml sets gpu.memory_gib; every GPU stage caps its
# allocator there), on one GPU. What comes back, under <out>/<card>/: every stage's stats JSON and Snakemake
# benchmark file at its path in the run, the logs, and run.json (command, machine, budget, exit status, seconds).
#   bash benchmarks/h200_site.sh h200_site workflow          # on a machine with a network; carry h200_site
#   bash benchmarks/capped_rehearsal.sh <out> 24gb [targets]    # then 48gb, one call each
#   python benchmarks/rehearsal_report.py --card 24gb=<out>/24gb --card 48gb=<out>/48gb ...   # docs/rehearsal.md
# EXTRA_CONFIG=<yaml>: one more --configfile (a scaled-down CPU smoke run of this script).
# CAPPED_REHEARSAL_COMMIT / CAPPED_REHEARSAL_CONDITIONS: recorded in run.json (commit where .git is absent; what
# else ran on the GPU at the same time).
# Default targets: the two benchmark CSVs (every GPU stage but merge and the analysis rules: those need the plot
# stack or, for the 14B merge, a disk write of 29.5 GB; benchmarks/merge_full_size.py checks the merge).
set -uo pipefail
out=$(realpath -m "${1:?output directory}")
card=${2:?card: 24gb or 48gb}
shift 2
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(results/cod_easy/benchmark.csv results/untrained_easy/benchmark.csv)
repo=$(pwd)
export PYTHONPATH="$repo/h200_site:$repo" TQDM_DISABLE=1
work=$(mktemp -d /tmp/capped_rehearsal.XXXX)
mkdir -p "$work/data" "$out/$card"
ln -s "$repo/data/raw" "$work/data/raw"  # rehearsal.yaml reads data/raw/ relative to the run directory
command=(python3 -m snakemake "${targets[@]}" -s "$repo/Snakefile" --directory "$work" --cores 1 --resources gpu=1
         --configfile "$repo/configs/rehearsal.yaml" "$repo/configs/$card.yaml" ${EXTRA_CONFIG:+"$EXTRA_CONFIG"}
         --keep-going)
start=$(date +%s)
timeout "${CAPPED_REHEARSAL_TIMEOUT:-560}" "${command[@]}" >"$out/$card/snakemake.log" 2>&1
status=$?
seconds=$(( $(date +%s) - start ))
(cd "$work" && find results logs \( -name '*.json' -o -name '*.tsv' -o -name '*.log' \) \
     ! -path '*/checkpoints/*' ! -name log_history.json ! -name 'tokenizer*.json' ! -name vocab.json -print0 | xargs -0 -r cp --parents -t "$out/$card")
# The device copy of the tree has no .git: the caller may name the commit and what else shared the GPU.
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo "${CAPPED_REHEARSAL_COMMIT:-unknown}")
python3 - "$out/$card/run.json" "$card" "$status" "$seconds" "${command[*]}" "$commit" \
    "${CAPPED_REHEARSAL_CONDITIONS:-alone on the GPU}" <<'PY'
import json, platform, subprocess, sys
import yaml
path, card, status, seconds, command, commit, conditions = sys.argv[1:]
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = None
budget = yaml.safe_load(open(f"configs/{card}.yaml"))["gpu"]["memory_gib"]
json.dump({"card": card, "memory_gib": budget, "command": command, "returncode": int(status),
           "seconds": int(seconds), "machine": platform.node(), "gpu": gpu, "commit": commit,
           "conditions": conditions}, open(path, "w"), indent=2)
PY
tail -n 25 "$out/$card/snakemake.log"
echo "rehearsal under $card: exit $status after ${seconds}s; results in $out/$card"
exit "$status"
