#!/usr/bin/env bash
# Packages the H200 lacks (it has torch, transformers, peft, accelerate, pyarrow, pandas and their own
# dependencies), installed for CPython 3.12 / manylinux into a folder to carry and put on PYTHONPATH.
#   bash benchmarks/h200_site.sh                 # ./h200_site: benchmarks/train_mfu.py (TRL, datasets,
#                                                # bitsandbytes stripped to its CUDA 13.0 library, Liger)
#   bash benchmarks/h200_site.sh h200_site workflow   # and Snakemake, jsonschema, math-verify: the GPU
#                                                # stages of the rehearsal through the workflow (no plots)
# The folder is ignored by git: carry it (the device tool's `carry: ["h200_site"]`), then on the GPU machine
#   PYTHONPATH=$PWD/h200_site:$PWD python benchmarks/train_mfu.py --out docs/rehearsal/train_mfu_h200.json
set -euo pipefail
site=${1:-h200_site}
mode=${2:-train}
binary=(--python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
train=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 bitsandbytes==0.50.2
       liger-kernel==0.8.5)
rm -rf "$site"
if [[ $mode == train ]]; then
    python3 -m pip install --quiet --no-compile --no-deps --target "$site" "${binary[@]}" "${train[@]}"
else
    # Snakemake's requirements minus connection_pool (published as a source archive only: added below), resolved
    # with their dependencies; what the H200 already has is left out.
    meta=$(python3 -m pip download --quiet --no-deps -d "$site.tmp" snakemake==9.27.1 >/dev/null && \
           unzip -p "$site.tmp"/snakemake-*.whl '*/METADATA')
    mapfile -t snakemake_deps < <(grep '^Requires-Dist' <<<"$meta" | grep -v 'extra ==' | grep -v connection_pool |
                                  sed 's/Requires-Dist: //; s/ //g')
    python3 -m pip install --quiet --dry-run --ignore-installed --report "$site.json" --target "$site" "${binary[@]}" \
        "${snakemake_deps[@]}" math-verify==0.9.0 "${train[@]}"
    present='^(torch|triton|nvidia-.*|numpy|pandas|pyarrow|python-dateutil|tzdata|six|transformers|tokenizers|safetensors|huggingface.hub|hf-xet|accelerate|sympy|mpmath|networkx|filelock|fsspec|jinja2|markupsafe|regex|pyyaml|packaging|tqdm|typing.extensions|setuptools|psutil|httpx2?|httpcore2?|anyio|h11|idna|certifi|click|typer|shellingham|rich|markdown-it-py|mdurl|pygments|annotated-doc)$'
    mapfile -t wanted < <(python3 -c "import json, sys; [print(f\"{i['metadata']['name']}=={i['metadata']['version']}\")
                                       for i in json.load(open(sys.argv[1]))['install']]" "$site.json" |
                          grep -Eiv "${present%)\$}"')==')
    python3 -m pip install --quiet --no-compile --no-deps --target "$site" "${binary[@]}" "${wanted[@]}" snakemake==9.27.1
    python3 -m pip install --quiet --no-compile --no-deps --target "$site" connection_pool==0.0.3
    # Snakemake falls back to its greedy scheduler without pulp's solver; SQLAlchemy has pure-Python fallbacks
    # for its Cython extensions. Under the device tool's 64 MiB carry.
    rm -rf "$site.tmp" "$site.json" "$site"/pulp/solverdir "$site"/sqlalchemy/cyextension/*.so
    find "$site" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
fi
find "$site/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda130.so' -delete
rm -rf "$site/bin"
du -sh "$site"
