#!/usr/bin/env bash
# bench/redis-compare.sh: the memory storage beside the Redis storage, and
# publish-to-deliver latency across two brokers of a cluster.
#
#   bench/redis-compare.sh [BUILD_DIR]      (default build-release)
#
# Starts its own redis-server (appendonly yes, appendfsync everysec, on a
# free port, data in a temporary folder) and, per step, fresh brokers with
# --workers 1 pinned to CPU 0; Redis and the tool run on CPU 1. Steps (each
# bounded: warm-up 2 s + 8 s measured):
#   accept-memory, accept-redis   1 subscriber, 4 publishers, batches of 100:
#                                 events accepted per second into the storage
#   fanout-memory, fanout-redis   100 subscribers, 1 publisher, batches of 10,
#                                 2,000 events/s: latency on one broker
#   fanout-cross                  the same, subscribers on broker B and the
#                                 publisher on broker A (Redis between them)
# Prints one line per step; KEEP=1 keeps the logs and JSON (folder printed).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
for tool in nebula-syncd nebula-sync-bench; do
  [ -x "$build/$tool" ] || { echo "redis-compare: $build/$tool missing (cmake --build $build)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "redis-compare: redis-server missing (apt-get install redis-server)" >&2; exit 2; }

work=$(mktemp -d /tmp/nebula-redis-compare.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync everysec --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_url="redis://127.0.0.1:$redis_port/0"

# start_broker NAME STORAGE: prints "PID PORT" once the broker is ready.
start_broker() {
  local name=$1 storage=$2 port admin args=()
  port=$(free_port); admin=$(free_port)
  [ "$storage" = redis ] && args=(--storage redis --redis-url "$redis_url")
  taskset -c 0 "$build/nebula-syncd" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --workers 1 "${args[@]}" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.05
  done
  echo "$pid $port"
}

# step NAME STORAGE CROSS bench-args...
step() {
  local name=$1 storage=$2 cross=$3; shift 3
  redis-cli -p "$redis_port" flushall >/dev/null
  local a_pid a_port
  read -r a_pid a_port < <(start_broker "$name-a" "$storage")
  local url="ws://127.0.0.1:$a_port/v1/sync" extra=() pid=$a_pid
  if [ "$cross" = cross ]; then
    read -r b_pid b_port < <(start_broker "$name-b" "$storage")
    extra=(--publish-url "$url"); url="ws://127.0.0.1:$b_port/v1/sync"; pid=$b_pid
  fi
  taskset -c 1 "$build/nebula-sync-bench" fanout --url "$url" "${extra[@]}" --broker-pid "$pid" \
    --warmup 2 --duration 8 --json "$work/$name.json" "$@" >"$work/$name.out" 2>"$work/$name.err" || true
  python3 - "$name" "$work/$name.json" <<'EOF'
import json, sys
name, path = sys.argv[1], sys.argv[2]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{name:14s} no result ({e})"); sys.exit(0)
lat = r.get("latency_us", {})
print(f"{name:14s} accepted {r.get('events_accepted_per_s', 0):>9.0f}/s  deliveries {r.get('deliveries_per_s', 0):>10.0f}/s"
      f"  p50 {lat.get('p50', 0)/1000:6.2f} ms  p99 {lat.get('p99', 0)/1000:6.2f} ms"
      f"  broker {r.get('broker_cpu_us_per_accepted_event', 0):5.1f} us/event"
      f"  lost {r.get('lost')}  dup {r.get('duplicated')}")
EOF
  for p in "$a_pid" ${b_pid:-}; do kill "$p" 2>/dev/null || true; done
  b_pid=""
}

b_pid=""
step accept-memory memory one --subscribers 1 --publishers 4 --batch 100 --inflight 4
step accept-redis  redis  one --subscribers 1 --publishers 4 --batch 100 --inflight 4
step fanout-memory memory one --subscribers 100 --publishers 1 --batch 10 --rate 2000
step fanout-redis  redis  one --subscribers 100 --publishers 1 --batch 10 --rate 2000
step fanout-cross  redis  cross --subscribers 100 --publishers 1 --batch 10 --rate 2000
