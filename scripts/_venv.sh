# Sourced by book.sh and test.sh: create or reuse the local virtual environment .venv and
# (re)install the project into it when pyproject.toml changed since the last install.
set -euo pipefail
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.sdmad-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $1"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing sdmad-lite[$1] into .venv (first time: a few minutes, torch is large)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$1]"
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
# The kernels that execute the notebooks (nbval, the book build) must draw with IPython's inline
# backend, which puts each figure into the cell's output as a PNG. A non-interactive MPLBACKEND
# (Agg) in the environment would silently drop every figure from the pages, so it is removed here;
# scripts/check_book_html.py fails on a page with fewer images than its notebook draws.
unset MPLBACKEND
# the explorers of sdmad_lite.explore show their static figure, not widgets (a built book has no kernel)
export SDMAD_STATIC=1
