#!/usr/bin/env bash
# The project's whole check: lint, format, types, then the test suite under
# both Keras flavors (Keras 3, then tf_keras). Run from anywhere; needs .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0 MPLBACKEND=Agg
echo "== ruff check";  $PY -m ruff check .
echo "== ruff format"; $PY -m ruff format --check .
echo "== mypy";        $PY -m mypy
echo "== pytest (Keras 3)"
TF_USE_LEGACY_KERAS=0 $PY -m pytest "$@"
echo "== pytest (tf_keras, TF_USE_LEGACY_KERAS=1)"
TF_USE_LEGACY_KERAS=1 $PY -m pytest "$@"
