#!/usr/bin/env bash
# One short GPU check of the colab pipeline (no network needed): on a CUDA machine, feature extraction
# images/s, head training time, peak GPU memory and GPU-vs-CPU differences for random-weight ViT-B-16 and
# ViT-L-14-336 on look-alike data; writes benchmarks/results/gpu.json (shown on the "What it costs" page).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh "book,test"
nvidia-smi --query-gpu=name,memory.total --format=csv || { echo "no NVIDIA GPU here"; exit 2; }
python benchmarks/bench_gpu.py --json benchmarks/results/gpu.json "$@"
