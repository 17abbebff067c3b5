#!/usr/bin/env bash
# Packages the H200 lacks for benchmarks/train_mfu.py (it has torch, transformers, peft, accelerate, pyarrow,
# pandas): installed for CPython 3.12 / manylinux into ./h200_site, bitsandbytes stripped to its CUDA 13.0
# library (4.4 MB instead of 43 MB). Run on any machine with pip and network; the folder is ignored by git,
# so carry it to the GPU machine (the device tool's `carry: ["h200_site"]`) and put it on PYTHONPATH:
#   bash benchmarks/h200_site.sh
#   PYTHONPATH=$PWD/h200_site:$PWD python benchmarks/train_mfu.py --out docs/rehearsal/train_mfu_h200.json
set -euo pipefail
site=${1:-h200_site}
rm -rf "$site"
python3 -m pip install --quiet --no-deps --target "$site" --python-version 3.12 --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 bitsandbytes==0.50.2 \
    liger-kernel==0.8.5
find "$site/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda130.so' -delete
rm -rf "$site/bin"
du -sh "$site"
