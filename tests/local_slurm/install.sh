#!/usr/bin/env bash
# Installs Debian's SLURM (controller, compute node daemon, client commands) and munge when they are missing.
# Exit 0: installed (or already there); exit 3: cannot be installed here, with the reason on stderr.
set -uo pipefail
needed=(munged slurmctld slurmd sbatch squeue scontrol)
missing() { for cmd in "${needed[@]}"; do command -v "$cmd" >/dev/null || return 0; done; return 1; }
missing || exit 0
command -v apt-get >/dev/null || { echo "slurm-wlm is not installed and there is no apt-get to install it" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "slurm-wlm is not installed and installing it needs root (apt-get)" >&2; exit 3; }
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge; } >"$log" 2>&1; then
    echo "apt-get could not install slurm-wlm and munge:" >&2; tail -5 "$log" >&2; rm -f "$log"; exit 3
fi
rm -f "$log"
missing && { echo "slurm-wlm installed, but still missing one of: ${needed[*]}" >&2; exit 3; }
exit 0
