#!/usr/bin/env bash
# Installs the Debian 12 packages Nebula Sync needs to build and run, and
# with --tests those the test suite needs too. Used by both README commands
# (tools/test.sh passes --tests) and so by .ci/run. Needs root (or sudo).
set -euo pipefail

# Building and running the broker (the README's first command).
packages=(
  build-essential cmake pkg-config
  libevent-dev          # event loops, buffers, listeners, evhttp admin endpoints
  libssl-dev openssl    # TLS, SHA-1/base64 for the handshake; openssl CLI for certificates
  libprotobuf-c-dev protobuf-c-compiler   # wire messages, generated at build time
  libhttp-parser-dev    # the WebSocket upgrade request
  uthash-dev            # hash tables (header-only): storage, channels, tokens
  libjansson-dev        # JSON validation of pushed documents
  libhiredis-dev        # Redis storage: async client with a libevent adapter
  libbenchmark-dev      # Google Benchmark: nebula-micro-bench (bench/micro/, built by bench/run)
)
# --tests adds what the test suite needs (tools/test.sh passes it).
test_packages=(
  clang libclang-rt-14-dev                # libFuzzer builds of the fuzz targets
  libgtest-dev googletest                 # the C++ test harness
  python3 python3-websockets              # interop tests with a client we did not write
  python3-protobuf protobuf-compiler      # ... speaking the sync protocol from Python
  redis-server          # the Redis storage and the cluster run against a real one
  haproxy               # the cluster test runs deploy/haproxy/haproxy.cfg
)
case "${1:-}" in
  --tests) packages+=("${test_packages[@]}") ;;
  "") ;;
  *) echo "usage: tools/install-deps.sh [--tests]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update
"${sudo_cmd[@]}" apt-get install -y "${missing[@]}"
