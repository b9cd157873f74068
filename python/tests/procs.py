"""Helpers of the framework tests: wait on a condition with a deadline,
start web servers as real processes and stop them by pid, HTTP calls."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from taskbroker.testing import _stop_pid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(REPO, "examples")


def wait_until(cond: Callable[[], Any], timeout: float = 15.0,
               what: str = "condition", interval: float = 0.02) -> Any:
    """cond()'s first true value, polled until timeout; AssertionError
    naming what if it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what} (last: {v!r})")
        time.sleep(interval)


class Server:
    """A server process whose log says where it listens."""

    def __init__(self, proc: "subprocess.Popen[bytes]", log: str) -> None:
        self.proc = proc
        self.log = log
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_listening(self, pattern: str, timeout: float = 20.0) -> int:
        def port() -> Optional[int]:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with "
                                     f"{self.proc.returncode}:\n{self.text()}")
            m = re.search(pattern, self.text())
            return int(m.group(1)) if m else None
        self.port = wait_until(port, timeout, "the server to listen")
        return self.port

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM, SIGKILL after grace; by pid."""
        return _stop_pid(self.proc, grace)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def start_hypercorn(app: str, cwd: str, env: dict[str, str],
                    *args: str, log_name: str = "web.log") -> Server:
    """``python -m hypercorn APP --bind 127.0.0.1:0 ARGS`` in cwd; waits
    until it listens.

    Unless ARGS give ``--workers``, hypercorn serves in its own process
    (``--workers 0``): by default it serves from one spawned child, which
    a kill -9 of the parent leaves running (and serving)."""
    if "--workers" not in args:
        args = ("--workers", "0", *args)
    log_path = os.path.join(cwd, log_name)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", app, "--bind",
             "127.0.0.1:0", *args], cwd=cwd, env=env, stdout=log,
            stderr=log, stdin=subprocess.DEVNULL)
    srv = Server(proc, log_path)
    try:
        srv.wait_listening(r"Running on http://127\.0\.0\.1:(\d+)")
    except BaseException:
        srv.stop(2)
        raise
    return srv


def request(port: int, method: str, path: str, body: Any = None,
            timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request on a new connection (closed after it); the status
    and the decoded JSON body (or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Connection": "close"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode("utf-8", "replace")
    finally:
        conn.close()


def example_env(srv: Any, example: str, **extra: str) -> dict[str, str]:
    """The environment to run examples/EXAMPLE against broker srv."""
    env = srv.env()
    path = os.path.join(EXAMPLES, example)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (path, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env
