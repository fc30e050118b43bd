#!/usr/bin/env bash
# quick-transport.sh: the quick transport benchmark of nebula-syncd.
#
#   bench/quick-transport.sh [NEBULA_SYNCD] [NEBULA_WS_BENCH]
#
# NEBULA_SYNCD defaults to build/nebula-syncd (use a Release build), the tool
# to nebula-ws-bench next to it. The broker runs with --workers 1 pinned to
# core 0 (taskset -c 0), the tool on core 1 (taskset -c 1). Four steps, each a
# freshly started broker and at most 30 s:
#   1. connect, plain ws://   handshakes per second
#   2. connect, TLS wss://    (P-256 self-signed certificate made here)
#   3. idle, plain, 10,000 connections: broker KiB per idle connection
#   4. idle, TLS,   10,000 connections
# then a Markdown table on stdout. Logs and JSON results go to a temporary
# folder, removed at the end unless KEEP=1 (then its path is printed).
#
# Environment knobs: PORT (default 18080), ADMIN_PORT (18090), CONCURRENCY
# (connect mode, default 64), DURATION (connect mode seconds, default 10),
# IDLE_CONNECTIONS (default 10000), HOLD (idle seconds, default 5),
# RAMP_LIMIT (seconds allowed to open the idle connections, default 20),
# STEPS (a subset of "connect-plain connect-tls idle-plain idle-tls").
set -euo pipefail

SYNCD=${1:-build/nebula-syncd}
BENCH=${2:-$(dirname "$SYNCD")/nebula-ws-bench}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18090}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-10}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
HOLD=${HOLD:-5}
RAMP_LIMIT=${RAMP_LIMIT:-20}
STEPS=${STEPS:-connect-plain connect-tls idle-plain idle-tls}
STEP_LIMIT=30

fail() { echo "quick-transport: $*" >&2; exit 1; }

[ -x "$SYNCD" ] || fail "no executable broker at '$SYNCD' (build it: cmake --build BUILD --target nebula-syncd)"
[ -x "$BENCH" ] || fail "no executable nebula-ws-bench at '$BENCH' (build it: cmake --build BUILD --target nebula-ws-bench)"
command -v taskset >/dev/null || fail "taskset not found (util-linux)"
command -v openssl >/dev/null || fail "openssl CLI not found"
cores=$(nproc)
[ "$cores" -ge 2 ] || fail "needs 2 cores (broker on core 0, tool on core 1); this machine has $cores"

# The tool raises its own soft limit; the broker inherits ours.
ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$IDLE_CONNECTIONS" -gt $((nofile - 100)) ]; then
    fail "IDLE_CONNECTIONS=$IDLE_CONNECTIONS needs more than the $nofile file descriptors a process may open here"
fi

work=$(mktemp -d /tmp/quick-transport.XXXXXX)
broker_pid=
broker_log=
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "quick-transport: logs and JSON kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A P-256 self-signed certificate for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$work/openssl.log" 2>&1 \
    || { cat "$work/openssl.log" >&2; fail "openssl could not make a certificate"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_open "$PORT" && fail "port $PORT is already in use (set PORT=...)"
port_open "$ADMIN_PORT" && fail "port $ADMIN_PORT is already in use (set ADMIN_PORT=...)"

# start_broker NAME [extra flags...]: a fresh broker on core 0.
start_broker() {
    local name=$1
    shift
    taskset -c 0 "$SYNCD" --listen "127.0.0.1:$PORT" --workers 1 \
        --admin-listen "127.0.0.1:$ADMIN_PORT" --log-level warn --drain-timeout 2 \
        "$@" >"$work/broker-$name.log" 2>&1 &
    broker_pid=$!
    broker_log=$work/broker-$name.log
    local i
    for i in $(seq 100); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            cat "$work/broker-$name.log" >&2
            broker_pid=
            fail "the broker exited at start-up (log above)"
        fi
        port_open "$PORT" && return 0
        sleep 0.1
    done
    fail "the broker did not listen on 127.0.0.1:$PORT within 10 s"
}

stop_broker() {
    [ -n "$broker_pid" ] || return 0
    kill -TERM "$broker_pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null; then
        echo "quick-transport: broker did not exit 10 s after SIGTERM; killing it" >&2
        kill -KILL "$broker_pid" 2>/dev/null || true
    fi
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=
}

# run_bench NAME flags...: the tool on core 1, at most STEP_LIMIT seconds.
run_bench() {
    local name=$1
    shift
    echo "== $name" >&2
    local rc=0
    timeout -k 5 "$STEP_LIMIT" taskset -c 1 "$BENCH" --broker-pid "$broker_pid" \
        --json "$work/$name.json" "$@" >"$work/$name.txt" 2>"$work/$name.progress" || rc=$?
    cat "$work/$name.txt"
    if [ "$rc" -ne 0 ]; then
        echo "quick-transport: step '$name' exited with status $rc" >&2
        tail -n 5 "$work/$name.progress" >&2
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "quick-transport: the broker died during '$name'; its log:" >&2
        tail -n 20 "$broker_log" >&2 || true
    fi
    return 0
}

# jget FILE KEY: a number from the tool's JSON (one key per line), or "n/a".
jget() {
    local v
    v=$(sed -n "s/^  \"$2\": \([-0-9.]*\),\{0,1\}\$/\1/p" "$1" 2>/dev/null | head -n 1)
    echo "${v:-n/a}"
}
jlat() {
    local v
    v=$(sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1" 2>/dev/null | head -n 1)
    echo "${v:-n/a}"
}

tls_flags=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")

want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want connect-plain; then
    start_broker plain-connect
    run_bench connect-plain --url "ws://127.0.0.1:$PORT/v1/sync" --mode connect \
        --connections "$CONCURRENCY" --duration "$DURATION"
    stop_broker
fi
if want connect-tls; then
    start_broker tls-connect "${tls_flags[@]}"
    run_bench connect-tls --url "wss://127.0.0.1:$PORT/v1/sync" --mode connect \
        --connections "$CONCURRENCY" --duration "$DURATION"
    stop_broker
fi
if want idle-plain; then
    start_broker plain-idle
    run_bench idle-plain --url "ws://127.0.0.1:$PORT/v1/sync" --mode idle \
        --connections "$IDLE_CONNECTIONS" --duration "$RAMP_LIMIT" --hold "$HOLD"
    stop_broker
fi
if want idle-tls; then
    start_broker tls-idle "${tls_flags[@]}"
    run_bench idle-tls --url "wss://127.0.0.1:$PORT/v1/sync" --mode idle \
        --connections "$IDLE_CONNECTIONS" --duration "$RAMP_LIMIT" --hold "$HOLD"
    stop_broker
fi

cp_=$work/connect-plain.json ct=$work/connect-tls.json ip=$work/idle-plain.json it=$work/idle-tls.json
echo
echo "nebula-syncd --workers 1 on core 0, nebula-ws-bench (1 thread) on core 1, $(uname -m), $cores cores"
echo
echo "| measurement | plain ws:// | TLS wss:// |"
echo "|---|---|---|"
echo "| handshakes per second ($CONCURRENCY in flight, ${DURATION} s) | $(jget "$cp_" handshakes_per_s) | $(jget "$ct" handshakes_per_s) |"
echo "| handshakes per broker CPU-second | $(jget "$cp_" handshakes_per_broker_cpu_s) | $(jget "$ct" handshakes_per_broker_cpu_s) |"
echo "| handshake latency p50 / p99 / max (us) | $(jlat "$cp_" p50) / $(jlat "$cp_" p99) / $(jlat "$cp_" max) | $(jlat "$ct" p50) / $(jlat "$ct" p99) / $(jlat "$ct" max) |"
echo "| connect-mode failures | $(jget "$cp_" failures) | $(jget "$ct" failures) |"
echo "| idle connections open (of $IDLE_CONNECTIONS) | $(jget "$ip" open) | $(jget "$it" open) |"
echo "| broker RSS before / after (KiB) | $(jget "$ip" rss_before_kib) / $(jget "$ip" rss_after_kib) | $(jget "$it" rss_before_kib) / $(jget "$it" rss_after_kib) |"
echo "| broker KiB per idle connection | $(jget "$ip" kib_per_connection) | $(jget "$it" kib_per_connection) |"
echo "| other processes' CPU during connect / idle (cores) | $(jget "$cp_" other_processes_cpu_cores) / $(jget "$ip" other_processes_cpu_cores) | $(jget "$ct" other_processes_cpu_cores) / $(jget "$it" other_processes_cpu_cores) |"
echo
echo "Numbers taken while other processes used a noticeable share of the CPUs (last row) are noisy."
