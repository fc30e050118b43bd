#!/usr/bin/python3
"""ws_interop: nebula-syncd against a WebSocket client nobody here wrote.

Runs Debian's python3-websockets (10.4, asyncio API) against the daemon,
once over ws:// and once over wss:// (certificate made with the openssl CLI):
checks the negotiated subprotocol, sends a Hello, expects a Welcome for
tenant "default", closes with 1000 and expects 1000 echoed, then sends
SIGTERM and expects exit status 0. Exits non-zero with a message on any
failure; everything runs under one hard timeout.

Usage: /usr/bin/python3 tests/interop/ws_interop.py --syncd PATH
"""
import argparse
import asyncio
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time

try:
    import websockets
except ImportError:  # pragma: no cover - environment problem, not a test failure to hide
    sys.exit("ws_interop: FAIL: python3-websockets is not installed for " + sys.executable)

from interop_common import STEP_TIMEOUT_S, SUBPROTOCOL, Daemon, InteropError, check, kill_all  # noqa: E402

HARD_TIMEOUT_S = 90



# ---- protobuf, by hand ---------------------------------------------------------
# Wire format: each field is a key varint (field_number << 3 | wire_type)
# followed by its value; wire type 0 is a varint, 2 is length-delimited
# (varint length + bytes: strings and embedded messages).
#
#   message Hello         { string client_id = 1; ... }
#   message ClientMessage { oneof message { Hello hello = 1; } }
#
# so ClientMessage{hello{client_id}} is
#   0x0A <len(hello)> [ 0x0A <len(client_id)> client_id ]
# (key 0x0A = field 1, wire type 2, at both levels).


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_hello(client_id):
    cid = client_id.encode("utf-8")
    hello = b"\x0a" + encode_varint(len(cid)) + cid
    return b"\x0a" + encode_varint(len(hello)) + hello


def decode_varint(buf, pos):
    shift = value = 0
    while True:
        check(pos < len(buf), "truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        check(shift < 64, "varint too long")


def decode_fields(buf):
    """Minimal decoder: {field_number: [values]}; bytes for wire type 2."""
    fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = decode_varint(buf, pos)
        elif wire_type == 2:
            length, pos = decode_varint(buf, pos)
            check(pos + length <= len(buf), "truncated length-delimited field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire_type == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise InteropError("unsupported wire type %d" % wire_type)
        fields.setdefault(number, []).append(value)
    return fields


def check_welcome(message):
    # ServerMessage { oneof { Welcome welcome = 1; Error error = 2; } }
    # Welcome { string session_id = 1; string tenant = 2; ... }
    check(isinstance(message, bytes), "expected a binary message, got text %r" % (message,))
    server = decode_fields(message)
    check(2 not in server, "server answered Hello with an Error: %r" % (server.get(2),))
    check(1 in server, "ServerMessage has no welcome (field 1): %r" % (message,))
    welcome = decode_fields(server[1][0])
    tenant = welcome.get(2, [b""])[0].decode("utf-8")
    check(tenant == "default", "Welcome.tenant is %r, expected 'default'" % tenant)
    check(welcome.get(1, [b""])[0] != b"", "Welcome.session_id is empty")


# ---- daemon --------------------------------------------------------------------


# ---- the client ------------------------------------------------------------------


async def one_session(url, ssl_context):
    ws = await asyncio.wait_for(
        websockets.connect(url, subprotocols=[SUBPROTOCOL], ssl=ssl_context,
                           open_timeout=STEP_TIMEOUT_S, close_timeout=STEP_TIMEOUT_S),
        STEP_TIMEOUT_S)
    try:
        check(ws.subprotocol == SUBPROTOCOL,
              "negotiated subprotocol %r, expected %r" % (ws.subprotocol, SUBPROTOCOL))
        if ssl_context is not None:
            version = ws.transport.get_extra_info("ssl_object").version()
            check(version in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % version)
        await asyncio.wait_for(ws.send(encode_hello("python-websockets-interop")), STEP_TIMEOUT_S)
        message = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT_S)
        check_welcome(message)
        await asyncio.wait_for(ws.close(code=1000, reason="interop done"), STEP_TIMEOUT_S)
        check(ws.close_code == 1000, "server answered close 1000 with %r" % (ws.close_code,))
    finally:
        if not ws.closed:
            ws.transport.abort()


def run_case(syncd, name, extra_args, ssl_context):
    daemon = Daemon(syncd, extra_args)
    try:
        url = daemon.wait_ready()
        check(url.startswith("wss://" if ssl_context else "ws://"), "%s: daemon listens on %s" % (name, url))
        asyncio.run(one_session(url, ssl_context))
    except InteropError as e:
        raise InteropError("%s: %s\nnebula-syncd stderr:\n%s" % (name, e, daemon.stderr()))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        raise InteropError("%s: %s: %s\nnebula-syncd stderr:\n%s"
                           % (name, type(e).__name__, e, daemon.stderr()))
    # (on failure main() kills the daemons)
    daemon.stop()
    print("ws_interop: %s ok" % name)


def make_certificate(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT_S)
    check(r.returncode == 0, "openssl req failed: %s" % r.stdout.decode("utf-8", "replace"))
    return cert, key


def on_alarm(signum, frame):
    kill_all()
    print("ws_interop: FAIL: hard timeout of %d s reached" % HARD_TIMEOUT_S, file=sys.stderr)
    os._exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncd", required=True, help="path to nebula-syncd")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HARD_TIMEOUT_S)
    started = time.monotonic()
    try:
        check(os.access(args.syncd, os.X_OK), "%s is not executable" % args.syncd)
        with tempfile.TemporaryDirectory(prefix="nebula-interop-") as tmp:
            cert, key = make_certificate(tmp)
            run_case(args.syncd, "ws://", [], None)
            context = ssl.create_default_context(cafile=cert)  # verifies chain and IP SAN
            run_case(args.syncd, "wss://", ["--tls-cert", cert, "--tls-key", key], context)
    except InteropError as e:
        kill_all()
        print("ws_interop: FAIL: %s" % e, file=sys.stderr)
        return 1
    print("ws_interop: OK (websockets %s, %.1f s)" % (websockets.__version__, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
