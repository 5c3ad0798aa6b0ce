#!/usr/bin/env bash
# The prepared GPU check: the demo trained on the GPU (rendering on the device), training images/s at 64x64
# and 640x480, inference frames per second at 640x480 (fp32, bf16, fp16, torch.compile), a one-device DDP
# run, the determinism rerun and peak GPU memory, all written to one JSON file. At most 8 minutes on one GPU.
#
#   tests/bench/gpu_check.sh [--out FILE] [--budget-s SECONDS] [--home DIR]
#   tests/bench/gpu_check.sh --cpu-smoke --out FILE     # the same steps at tiny sizes on the CPU (the tests run it)
#
# $PYTHON picks the interpreter (default: python3 on PATH, which must have fastpose and a CUDA torch).
# The steps and what each measures: tests/bench/gpu_check.py. Exit code 0 when every step that ran succeeded.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
