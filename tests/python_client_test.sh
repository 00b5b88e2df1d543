#!/usr/bin/env bash
# Runs the Python module's pytest suite (tests/python_client_test.py) with the interpreter it was built for.
# usage: strata_py_test.sh PYTHON MODULE_SO TEST_PY STRATA_BINARY
set -euo pipefail
PYTHON="$1"
MODULE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
TEST="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
export STRATA_BINARY="$(cd "$(dirname "$4")" && pwd)/$(basename "$4")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/strata_py"
rm -rf "$WORK"
mkdir -p "$WORK"
# The module imports as `strata` from a directory of its own.
cp "$MODULE" "$WORK/"
cp "$TEST" "$WORK/"
cd "$WORK"
export PYTHONPATH="$WORK"
export STRATA_WORK="$WORK"
exec "$PYTHON" -m pytest -q -p no:cacheprovider "$WORK/$(basename "$TEST")"
