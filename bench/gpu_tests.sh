#!/usr/bin/env bash
# On the GPU machine (device tool, carry [".whl"]): install the carried wheels it lacks, then
# run the `gpu`-marked tests (tests/test_gpu.py). Output and a JUnit file land in $OUT.
set -o pipefail
cd "$(dirname "$0")/.."
python3 bench/device_setup.py > "${OUT:-/tmp}/env.txt" 2>&1 || { cat "${OUT:-/tmp}/env.txt"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_kernels_gpu.py -p no:cacheprovider \
    --junitxml="${OUT:-/tmp}/gpu-tests.xml" "$@" 2>&1 | tee "${OUT:-/tmp}/gpu-tests.log"
