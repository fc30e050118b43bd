#!/usr/bin/python3
"""sync_interop: the nebula-sync.v1 session protocol with clients nobody here wrote.

Generates Python classes from proto/nebula_sync.proto with Debian's protoc
(protobuf-compiler) into a temp directory, and drives nebula-syncd with
Debian's python3-protobuf and python3-websockets (10.4, asyncio API):

  - two clients send Hello (Welcome, tenant "default") and subscribe to
    "todos" without a cursor (Subscribed SNAPSHOT, head seq 0, one empty
    snapshot page with last = true);
  - one pushes 3 events: ACCEPTED with seqs 1, 2, 3; the other receives
    exactly those events, in order, with the pusher's client_id stamped by
    the server; the pusher does not get its own events back;
  - the same Push again: DUPLICATE with the same seqs, delivered to nobody;
  - a third client subscribes with cursor {1, epoch}: Subscribed REPLAY,
    then the events with seqs 2 and 3;
  - SIGTERM: the daemon exits with status 0.

Exits non-zero with a message on any failure; everything runs under one
hard timeout.

Usage: /usr/bin/python3 tests/interop/sync_interop.py --syncd PATH
"""
import argparse
import asyncio
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

try:
    import websockets
except ImportError:  # pragma: no cover - environment problem, not a test failure to hide
    sys.exit("sync_interop: FAIL: python3-websockets is not installed for " + sys.executable)
try:
    import google.protobuf  # noqa: F401
except ImportError:  # pragma: no cover
    sys.exit("sync_interop: FAIL: python3-protobuf is not installed for " + sys.executable)

from interop_common import STEP_TIMEOUT_S, SUBPROTOCOL, Daemon, InteropError, check, kill_all  # noqa: E402

HARD_TIMEOUT_S = 90
QUIET_S = 0.3
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pb = None  # the generated module, loaded in main()


def load_proto_module(workdir):
    """protoc --python_out=workdir, then import nebula_sync_pb2 from there."""
    protoc = shutil.which("protoc")
    check(protoc is not None, "protoc not found (Debian package protobuf-compiler)")
    proto_dir = os.path.join(REPO, "proto")
    result = subprocess.run([protoc, "--python_out=" + workdir, "--proto_path=" + proto_dir,
                             os.path.join(proto_dir, "nebula_sync.proto")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT_S)
    check(result.returncode == 0, "protoc failed:\n" + result.stdout.decode("utf-8", "replace"))
    sys.path.insert(0, workdir)
    return importlib.import_module("nebula_sync_pb2")


# ---- daemon --------------------------------------------------------------------


# ---- protocol helpers --------------------------------------------------------------


def describe(message):
    return "%s{%s}" % (message.WhichOneof("message"), str(message).replace("\n", " ")[:300])


class Client:
    def __init__(self, name, ws):
        self.name = name
        self.ws = ws

    @classmethod
    async def open(cls, url, name):
        ws = await asyncio.wait_for(
            websockets.connect(url, subprotocols=[SUBPROTOCOL], open_timeout=STEP_TIMEOUT_S,
                               close_timeout=STEP_TIMEOUT_S, max_size=2 ** 24),
            STEP_TIMEOUT_S)
        check(ws.subprotocol == SUBPROTOCOL, "negotiated subprotocol %r" % (ws.subprotocol,))
        client = cls(name, ws)
        await client.send(pb.ClientMessage(hello=pb.Hello(client_id=name, client_version="sync-interop")))
        welcome = await client.recv()
        check(welcome.WhichOneof("message") == "welcome", "%s: expected Welcome, got %s" % (name, describe(welcome)))
        check(welcome.welcome.tenant == "default", "%s: tenant %r" % (name, welcome.welcome.tenant))
        check(welcome.welcome.session_id != "", "%s: empty session_id" % name)
        return client

    async def send(self, message):
        await asyncio.wait_for(self.ws.send(message.SerializeToString()), STEP_TIMEOUT_S)

    async def recv(self, timeout=STEP_TIMEOUT_S):
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        check(isinstance(raw, bytes), "%s: expected a binary message, got text %r" % (self.name, raw))
        message = pb.ServerMessage()
        message.ParseFromString(raw)
        return message

    async def expect(self, kind):
        message = await self.recv()
        check(message.WhichOneof("message") == kind,
              "%s: expected %s, got %s" % (self.name, kind, describe(message)))
        return getattr(message, kind)

    async def quiet(self, seconds=QUIET_S):
        """Nothing arrives for a moment."""
        try:
            message = await self.recv(timeout=seconds)
        except asyncio.TimeoutError:
            return
        raise InteropError("%s: expected nothing, got %s" % (self.name, describe(message)))

    async def subscribe(self, collection, cursor=None):
        sub = pb.CollectionSubscription(collection=collection)
        if cursor is not None:
            sub.cursor.CopyFrom(cursor)
        await self.send(pb.ClientMessage(subscribe=pb.Subscribe(collections=[sub])))
        subscribed = await self.expect("subscribed")
        check(subscribed.collection == collection, "%s: Subscribed for %r" % (self.name, subscribed.collection))
        check(subscribed.HasField("head"), "%s: Subscribed without head" % self.name)
        return subscribed

    async def events(self, collection, count):
        """Exactly count events of collection, possibly over several Events messages."""
        got = []
        while len(got) < count:
            events = await self.expect("events")
            check(events.collection == collection, "%s: Events of %r" % (self.name, events.collection))
            got.extend(events.events)
        check(len(got) == count, "%s: %d events, expected %d" % (self.name, len(got), count))
        return got

    async def close(self):
        await asyncio.wait_for(self.ws.close(code=1000), STEP_TIMEOUT_S)


# ---- the scenario -------------------------------------------------------------------------


async def scenario(url):
    alice = await Client.open(url, "py-alice")
    bob = await Client.open(url, "py-bob")

    epoch = None
    for c in (alice, bob):
        subscribed = await c.subscribe("todos")
        check(subscribed.mode == pb.SUBSCRIBE_MODE_SNAPSHOT, "%s: mode %d, expected SNAPSHOT" % (c.name, subscribed.mode))
        check(subscribed.head.seq == 0, "%s: head seq %d, expected 0" % (c.name, subscribed.head.seq))
        check(subscribed.head.epoch != "", "%s: empty epoch" % c.name)
        epoch = epoch or subscribed.head.epoch
        check(subscribed.head.epoch == epoch, "%s: another epoch" % c.name)
        snapshot = await c.expect("snapshot")
        check(snapshot.collection == "todos" and snapshot.last and len(snapshot.documents) == 0,
              "%s: expected one empty last snapshot page, got %s" % (c.name, snapshot))
        check(snapshot.cursor.seq == 0 and snapshot.cursor.epoch == epoch,
              "%s: snapshot cursor %s" % (c.name, snapshot.cursor))

    pushed = [pb.Event(id=str(uuid.uuid4()), type=pb.EVENT_TYPE_INSERT, collection="todos",
                       document_id="doc-%d" % i, data=json.dumps({"title": "item %d" % i}).encode(),
                       timestamp=1700000000000 + i, hlc=100 + i, client_id="spoofed")
              for i in range(3)]
    await alice.send(pb.ClientMessage(push=pb.Push(request_id=7, events=pushed)))
    result = await alice.expect("push_result")
    check(result.request_id == 7, "request_id %d, expected 7" % result.request_id)
    check([(r.event_id, r.status, r.seq) for r in result.results] ==
          [(e.id, pb.PUSH_STATUS_ACCEPTED, i + 1) for i, e in enumerate(pushed)],
          "expected ACCEPTED seqs 1..3, got %s" % result)

    received = await bob.events("todos", 3)
    check([e.seq for e in received] == [1, 2, 3], "bob got seqs %s" % [e.seq for e in received])
    for sent, got in zip(pushed, received):
        check(got.id == sent.id and got.document_id == sent.document_id and got.data == sent.data
              and got.type == sent.type and got.hlc == sent.hlc,
              "bob got %s for %s" % (got, sent))
        check(got.client_id == "py-alice", "client_id %r not stamped by the server" % got.client_id)
    await alice.quiet()  # own events do not come back live

    # The same Push again (a retry after a lost result): DUPLICATE, same seqs.
    await alice.send(pb.ClientMessage(push=pb.Push(request_id=8, events=pushed)))
    result = await alice.expect("push_result")
    check(result.request_id == 8, "request_id %d, expected 8" % result.request_id)
    check([(r.status, r.seq) for r in result.results] == [(pb.PUSH_STATUS_DUPLICATE, i + 1) for i in range(3)],
          "expected DUPLICATE seqs 1..3, got %s" % result)
    await bob.quiet()  # duplicates are delivered to nobody

    carol = await Client.open(url, "py-carol")
    subscribed = await carol.subscribe("todos", pb.Cursor(seq=1, epoch=epoch))
    check(subscribed.mode == pb.SUBSCRIBE_MODE_REPLAY, "carol: mode %d, expected REPLAY" % subscribed.mode)
    check(subscribed.head.seq == 3 and subscribed.head.epoch == epoch, "carol: head %s" % subscribed.head)
    replayed = await carol.events("todos", 2)
    check([(e.seq, e.id) for e in replayed] == [(2, pushed[1].id), (3, pushed[2].id)],
          "carol replayed %s" % [(e.seq, e.id) for e in replayed])
    await carol.quiet()

    for c in (alice, bob, carol):
        await c.close()


def main():
    global pb
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncd", required=True, help="path to the nebula-syncd binary")
    args = parser.parse_args()

    def on_alarm(signum, frame):
        kill_all()
        print("sync_interop: FAIL: hard timeout of %d s" % HARD_TIMEOUT_S, file=sys.stderr)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HARD_TIMEOUT_S)
    workdir = tempfile.mkdtemp(prefix="nebula-sync-interop-")
    daemon = None
    try:
        pb = load_proto_module(workdir)
        daemon = Daemon(args.syncd, [])
        url = daemon.wait_ready()
        asyncio.run(asyncio.wait_for(scenario(url), HARD_TIMEOUT_S - 15))
        daemon.stop()
    except Exception as e:  # noqa: BLE001 - any failure is reported, with the daemon's stderr
        kill_all()
        detail = "%s: %s" % (type(e).__name__, e) if not isinstance(e, InteropError) else str(e)
        stderr = daemon.stderr() if daemon else "(not started)"
        print("sync_interop: FAIL: %s\n--- daemon stderr ---\n%s" % (detail, stderr), file=sys.stderr)
        return 1
    finally:
        kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print("sync_interop: OK (snapshot, push, delivery, duplicate, replay)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
