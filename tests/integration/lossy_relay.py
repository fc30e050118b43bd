#!/usr/bin/env python3
"""lossy_relay: a WebSocket broadcast server (what bench/peers/ws_broadcast_server.js
does: every message to every other connection) that can damage one message,
so that tests/integration/test_sync_bench.cpp can show nebula-sync-bench's
seq check catching it end to end, without Node.

    lossy_relay.py [--mode pass|drop|double] [--message N]

Listens on 127.0.0.1, a free port; prints "ready: port P" on stdout. The
N-th message (from 0, counted over all connections) is, in mode drop,
relayed without the second event of its JSON array, and in mode double with
that event twice. SIGTERM or SIGINT stops it. Uses Debian's
python3-websockets (10.x), like the interop tests.
"""
import argparse
import asyncio
import json
import signal
import sys

import websockets


def damage(message, mode):
    events = json.loads(message)
    if mode == "drop":
        del events[1]
    elif mode == "double":
        events.insert(2, events[1])
    return json.dumps(events, separators=(",", ":"), ensure_ascii=False)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["pass", "drop", "double"], default="pass")
    parser.add_argument("--message", type=int, default=3)
    args = parser.parse_args()

    clients = set()
    received = 0

    async def relay(ws, path=None):
        nonlocal received
        clients.add(ws)
        try:
            async for message in ws:
                if received == args.message and args.mode != "pass":
                    message = damage(message, args.mode)
                received += 1
                websockets.broadcast([c for c in clients if c is not ws], message)
        finally:
            clients.discard(ws)

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(relay, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ready: port {port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
