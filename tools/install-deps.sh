#!/usr/bin/env bash
# Installs every Debian 12 package Nebula Sync needs to build, test and run.
# Used by both README commands and by .ci/run. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libevent-dev          # event loops, buffers, listeners, evhttp admin endpoints
  libssl-dev openssl    # TLS, SHA-1/base64 for the handshake; openssl CLI for test certificates
  libprotobuf-c-dev protobuf-c-compiler   # wire messages, generated at build time
  libhttp-parser-dev    # the WebSocket upgrade request
  uthash-dev            # hash tables (header-only): storage, channels, tokens
  libjansson-dev        # JSON validation of pushed documents
  libhiredis-dev        # Redis storage: async client with a libevent adapter
  redis-server          # tests: the Redis storage and the cluster run against a real one
  haproxy               # tests: the cluster test runs deploy/haproxy/haproxy.cfg
  libgtest-dev googletest                 # the C++ test harness
  libbenchmark-dev      # Google Benchmark: nebula-micro-bench (bench/micro/, built by bench/run)
  python3 python3-websockets              # interop tests with a client we did not write
  python3-protobuf protobuf-compiler      # ... speaking the sync protocol from Python
)

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
