"""interop_common: what the interop scripts share: failing with a message,
and running nebula-syncd on ephemeral ports until SIGTERM (exit 0 expected).
"""
import os
import re
import signal
import subprocess
import threading

STEP_TIMEOUT_S = 10
SUBPROTOCOL = "nebula-sync.v1"

_daemons = []


class InteropError(Exception):
    pass


def check(condition, message):
    if not condition:
        raise InteropError(message)


class Daemon:
    def __init__(self, syncd, extra_args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
        self.args = [syncd, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                     "--workers", "2", "--drain-timeout", "5"] + extra_args
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        _daemons.append(self)
        self.lines = []
        self.ready = threading.Event()
        self.url = None
        # Drain stderr continuously so the daemon never blocks on the pipe.
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = re.search(r"ready: listen=(wss?://127\.0\.0\.1:\d+) ", line)
            if m and not self.ready.is_set():
                self.url = m.group(1) + "/v1/sync"
                self.ready.set()
        self.ready.set()

    def wait_ready(self):
        self.ready.wait(STEP_TIMEOUT_S)
        check(self.url is not None, "no ready line from %s; stderr:\n%s" % (" ".join(self.args), self.stderr()))
        return self.url

    def stderr(self):
        return "\n".join(self.lines[-40:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STEP_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise InteropError("nebula-syncd did not exit after SIGTERM; stderr:\n" + self.stderr())
        self.reader.join(STEP_TIMEOUT_S)
        check(code == 0, "nebula-syncd exited with %d after SIGTERM; stderr:\n%s" % (code, self.stderr()))


def kill_all():
    for d in _daemons:
        if d.proc.poll() is None:
            d.proc.kill()
