#!/usr/bin/env bash
# Builds Nebula Sync and runs the whole test suite with ctest.
#   tools/test.sh                      plain build in build/
#   tools/test.sh --sanitize address   ASan+UBSan build in build-asan/
#   tools/test.sh --sanitize thread    TSan build in build-tsan/
# Installs the Debian packages it needs first (tools/install-deps.sh --tests).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize="${2:?--sanitize needs address or thread}"; shift 2 ;;
    --sanitize=*) sanitize="${1#*=}"; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "tools/test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# Sanitizer builds are unoptimised (Debug): they build faster, and their
# reports point at exact lines.
case "$sanitize" in
  "") build_dir=build; build_type=RelWithDebInfo ;;
  address) build_dir=build-asan; build_type=Debug ;;
  thread) build_dir=build-tsan; build_type=Debug ;;
  *) echo "tools/test.sh: --sanitize takes address or thread, not '$sanitize'" >&2; exit 2 ;;
esac

bash tools/install-deps.sh --tests
jobs=$(nproc)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="$build_type" -DNEBULA_SANITIZE="$sanitize" \
  -DNEBULA_TESTS=ON >/dev/null
cmake --build "$build_dir" -j "$jobs"

# Sanitizer reports fail the run; the daemon's exit status carries them too.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
