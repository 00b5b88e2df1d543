#!/usr/bin/env bash
# Installs every Debian package Strata needs to build, test and run.
# Idempotent: safe to run again. Needs root (or sudo) and Debian 12.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap
  g++
  python3
  pkg-config
  librocksdb-dev
  libgrpc++-dev
  protobuf-compiler-grpc
  protobuf-compiler
  libprotobuf-dev
  libabsl-dev
  libucx-dev
  ucx-utils
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libssl-dev
  openssl
  libxxhash-dev
  redis-server
  redis-tools
  libcpp-httplib-dev
  prometheus
  python3-dev
  python3-pybind11
  python3-pytest
  python3-numpy
  etcd-server
  iproute2
  clang
  libclang-rt-14-dev
  make
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

$SUDO apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi
if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found at /usr/local/cuda: GPU targets will be built"
else
  echo "setup: no CUDA toolkit at /usr/local/cuda: GPU targets are left out"
fi
