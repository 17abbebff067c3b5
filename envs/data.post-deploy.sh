#!/usr/bin/env bash
# Snakemake runs this once, in the environment it has just built (--sdm conda), found next to the env file
# as <env>.post-deploy.sh (train, serve and report link here). It installs the specdraft package from the
# workflow's own source tree, which the Snakefile passes as SPECDRAFT_SOURCE (workflow.basedir; Snakemake
# gives a post-deploy script only $CONDA_PREFIX). Not editable, and from a copy, so that the environment
# keeps working when the checkout moves and the checkout gets no build/ or egg-info. --no-deps: the env
# file pins every dependency this environment's rules import.
set -euo pipefail
source_dir="${SPECDRAFT_SOURCE:?is not set: run this through the workflow, whose Snakefile sets it}"
if [ ! -f "$source_dir/pyproject.toml" ] || [ ! -d "$source_dir/specdraft" ]; then
    echo "SPECDRAFT_SOURCE=$source_dir holds no specdraft source tree (pyproject.toml, specdraft/)" >&2
    exit 1
fi
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
cp -r "$source_dir/pyproject.toml" "$source_dir/README.md" "$source_dir/specdraft" "$copy/"
"$CONDA_PREFIX/bin/python" -m pip install --no-deps --no-input --quiet "$copy"
