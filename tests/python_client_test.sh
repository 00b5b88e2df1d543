#!/usr/bin/env bash
# Runs one of the Python module's pytest files against real `strata serve`
# processes, with the interpreter the module was built for.
# usage: python_client_test.sh PYTHON MODULE_SO TEST_PY STRATA_BINARY [ARG...]
#   ARG: NAME=VALUE is exported to the test; anything else is a file copied
#   beside the test (a helper module it imports).
set -euo pipefail
PYTHON="$1"
MODULE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
TEST="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
export STRATA_BINARY="$(cd "$(dirname "$4")" && pwd)/$(basename "$4")"
shift 4
WORK="${TEST_TMPDIR:-$(mktemp -d)}/strata_py"
rm -rf "$WORK"
mkdir -p "$WORK"
# The module imports as `strata` from a directory of its own.
cp "$MODULE" "$WORK/"
cp "$TEST" "$WORK/"
for arg in "$@"; do
  if [[ "$arg" == *=* ]]; then
    export "$arg"
  else
    cp "$arg" "$WORK/"
  fi
done
cd "$WORK"
export PYTHONPATH="$WORK"
export STRATA_WORK="$WORK"
exec "$PYTHON" -m pytest -q -p no:cacheprovider "$WORK/$(basename "$TEST")"
