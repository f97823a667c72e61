#!/usr/bin/env bash
# Re-run the notebooks' golden cells as another machine would: AVX2 kernels instead of AVX-512
# (torch, numpy and OpenBLAS), one OpenMP thread, and an empty result and feature cache (nothing
# reused). Every golden cell must still pass: they print only what every machine computes alike.
#   bash scripts/nbval_other_machine.sh        (about as long as a cold execution of the book)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh "book,test" || exit 1
cache=$(mktemp -d /tmp/sdmad-other-machine-XXXX)
trap 'rm -rf "$cache"' EXIT
export SDMAD_CACHE="$cache" SDMAD_PROFILE=offline ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 \
       NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" OPENBLAS_CORETYPE=Haswell
echo "[other machine] ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY OMP_NUM_THREADS=$OMP_NUM_THREADS empty cache $cache"
python -m pytest notebooks -q -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-sanitize-with tests/nbval_sanitize.cfg
