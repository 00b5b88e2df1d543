#!/usr/bin/env bash
# Bazel wrapper: runs the Python cross-check with the system python3.
set -euo pipefail
exec python3 "$(dirname "$0")/key_vectors_test.py" "$@"
