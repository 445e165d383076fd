#!/usr/bin/env bash
# The prepared GPU check (under 8 minutes), for a session that is lent a device machine.
#
# Here, once:   make gpu-wheels        (wheels the GPU image lacks, into .whl/, which git ignores)
# Then:         device run, carry [".whl"], command: bash tests/gpu/run_on_device.sh
# It installs the wheels beside the image's CUDA torch, runs tests/gpu on CUDA in bfloat16 (a model split across
# the CPU and the GPU included) and the generation benchmark in bfloat16; logs go to $OUT.
set -euo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 330 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/gpu 2>&1 | tee "$OUT/gpu_tests.log"
timeout 120 python3 benchmarks/bench_generate.py --dtype bfloat16 --device cuda --model tiny-llava-onevision 2>&1 | tee "$OUT/bench_generate.jsonl"
