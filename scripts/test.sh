#!/usr/bin/env bash
# Run every check: library tests, notebooks (nbval), the book build of what nbval executed (warnings are errors,
# a failing cell fails it) and the rendered pages in headless Chromium.
# Exit status is non-zero when any step fails; every step runs and a summary is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh "book,test" || exit 1
set +e
export SDMAD_PROFILE=offline
failed=()
step() {
  local name=$1; shift
  echo; echo "=== [$name] $*"
  local t0=$(date +%s)
  "$@"; local rc=$?
  echo "=== [$name] exit $rc in $(( $(date +%s) - t0 )) s"
  [ $rc -eq 0 ] || failed+=("$name")
  return $rc
}
step pytest python -m pytest tests -q -p no:cacheprovider -n auto --dist worksteal  # one process per core (pytest-xdist), idle ones take queued tests
# nbval executes every notebook once and stores each one that passed (scripts/nbval_cache.py); the book is then
# built from those outputs (execute_notebooks: cache), and executes only what nbval did not store.
rm -rf _build/nbval-cache _build/nbval-book.yml  # never render an earlier run's outputs
step nbval python -m pytest notebooks -q -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-sanitize-with tests/nbval_sanitize.cfg -p scripts.nbval_cache --nbval-cache _build/nbval-cache
python scripts/nbval_cache.py _config.yml _build/nbval-cache _build/nbval-book.yml >/dev/null
if step book jupyter-book build . --config _build/nbval-book.yml -W -n --keep-going --all; then
  step browser python scripts/check_book_html.py _build/html --screenshots _build/screenshots
else
  failed+=("browser (skipped: no fresh book)")
fi
echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "All checks passed (pytest, nbval, book, browser)."
