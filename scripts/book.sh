#!/usr/bin/env bash
# Build the book: set up .venv, execute every notebook (offline profile by default), write HTML.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh "book,test"
export SDMAD_PROFILE="${SDMAD_PROFILE:-offline}"
start=$(date +%s)
jupyter-book build . -W -n --keep-going
echo
echo "Book built in $(( $(date +%s) - start )) s on the '$SDMAD_PROFILE' profile."
echo "Open it: file://$PWD/_build/html/index.html"
