#!/usr/bin/env bash
# The project's whole check: lint, format and types, then the test suite under
# both Keras flavors — Keras 3 and tf_keras (TF_USE_LEGACY_KERAS=1) — run side by
# side in two processes. Extra arguments go to pytest. Needs .venv (see README).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0 MPLBACKEND=Agg

echo "== ruff check" && $PY -m ruff check . || exit 1
echo "== ruff format --check" && $PY -m ruff format --check . || exit 1
echo "== mypy" && $PY -m mypy || exit 1

# Headless Chromium renders the demo's HTML report in one test. It is a Debian
# package; install it when we can (root with apt-get, as on CI), else that test skips.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium (Debian package) for the HTML report test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >/dev/null 2>&1 || echo "   could not install chromium: the HTML rendering test will be skipped"
fi

mkdir -p .test-logs
# Two sessions share the cores: one TensorFlow thread pool thread each (intra- and inter-op),
# instead of each sizing its pools to every core and the two oversubscribing the machine.
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
echo "== pytest under Keras 3 and tf_keras, in parallel (logs in .test-logs/)"
TF_USE_LEGACY_KERAS=0 $PY -m pytest --basetemp=.test-logs/tmp-keras3 "$@" \
  > .test-logs/keras3.log 2>&1 &
k3=$!
TF_USE_LEGACY_KERAS=1 $PY -m pytest --basetemp=.test-logs/tmp-tf_keras "$@" \
  > .test-logs/tf_keras.log 2>&1 &
tk=$!
wait $k3; rc_k3=$?
wait $tk; rc_tk=$?

echo "== pytest (Keras 3)"; cat .test-logs/keras3.log
echo "== pytest (tf_keras, TF_USE_LEGACY_KERAS=1)"; cat .test-logs/tf_keras.log

count() {  # count WORD FILE: the number before WORD in pytest's closing line
  tail -n 1 "$2" | grep -oE "[0-9]+ $1" | grep -oE "[0-9]+" || echo 0
}
passed=$(( $(count passed .test-logs/keras3.log) + $(count passed .test-logs/tf_keras.log) ))
failed=$(( $(count failed .test-logs/keras3.log) + $(count failed .test-logs/tf_keras.log) ))
errors=$(( $(count error .test-logs/keras3.log) + $(count error .test-logs/tf_keras.log) ))
skipped=$(( $(count skipped .test-logs/keras3.log) + $(count skipped .test-logs/tf_keras.log) ))
echo "== both flavors (Keras 3 exit $rc_k3, tf_keras exit $rc_tk)"
echo "total: $passed passed, $(( failed + errors )) failed, $skipped skipped"
[ "$rc_k3" = 0 ] && [ "$rc_tk" = 0 ]
