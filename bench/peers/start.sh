#!/usr/bin/env bash
# Starts one of the peer servers that nebula-sync-bench fanout compares
# nebula-syncd with, in the foreground (exec: the shell becomes node, so the
# caller's $! is the server's pid, for --broker-pid):
#
#   bench/peers/start.sh socketio PORT       the seed's Socket.IO sync server
#   bench/peers/start.sh ws-broadcast PORT   a plain `ws` broadcast server
#
# Both listen on 127.0.0.1:PORT. Once the server accepts connections it prints
# one line on stdout, "ready: TARGET URL pid PID (versions)"; everything else
# (npm's output, errors) goes to stderr. The npm packages are installed into
# bench/peers/node_modules with `npm ci` from package-lock.json when that
# folder is missing or was installed from another lock file.
#
# Exit status (before the server runs): 2 usage, 3 node or npm not found,
# 4 `npm ci` failed (no registry, or a broken lock file: its output says which).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() {
  echo "usage: bench/peers/start.sh socketio|ws-broadcast PORT" >&2
  exit 2
}
[ $# -eq 2 ] || usage
case "$1" in
  socketio) script=socketio_server.js ;;
  ws-broadcast) script=ws_broadcast_server.js ;;
  *) echo "start.sh: unknown peer '$1'" >&2; usage ;;
esac
port="$2"
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  echo "start.sh: PORT must be 1..65535, not '$port'" >&2
  usage
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "start.sh: '$tool' not found: the peer servers need Node.js 18+ and npm" \
         "(Debian: apt-get install nodejs npm)" >&2
    exit 3
  fi
done

# One install at a time (tests start both peers in parallel); the stamp is a
# copy of the lock file that node_modules was installed from.
stamp="$here/node_modules/.installed-package-lock.json"
exec 9>"$here/.npm-install.lock"
flock 9
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
  echo "start.sh: installing the peer servers' npm packages (npm ci in $here)" >&2
  if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error 1>&2); then
    echo "start.sh: npm ci failed in $here (is the npm registry reachable?)" >&2
    exit 4
  fi
  cp "$here/package-lock.json" "$stamp"
fi
exec 9>&-

exec node "$here/$script" "$port"
