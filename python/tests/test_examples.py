"""examples/asab as its README runs it: the ASAB app (serving its own
tasks) on a real broker; its forever task outlives a restart of the app.
(examples/quart and examples/aiohttp: test_quart_example.py and
test_aiohttp.py.)"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import pytest

from taskbroker import _lib
from taskbroker.testing import run_broker

from procs import EXAMPLES, example_env, wait_until

pytestmark = pytest.mark.skipif(
    not _lib.has("tb_worker_open"),
    reason="this libtaskbroker has no worker API")


@pytest.fixture
def srv():
    with run_broker("--worker-handler=logs.watch,logs.compress") as s:
        yield s


def start_app(srv, env, n: int) -> subprocess.Popen:
    log = open(os.path.join(srv.dir, f"asab{n}.log"), "ab")
    p = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "asab",
                                                       "app.py")],
                         cwd=srv.dir, env=env, stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL)
    log.close()
    return p


def drop(inbox: str, name: str, lines: int) -> str:
    tmp = os.path.join(inbox, name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(f"{i}\n" for i in range(lines))
    os.replace(tmp, os.path.join(inbox, name))
    return os.path.join(inbox, name + ".gz")


def test_asab_example_compresses_and_survives_a_restart(srv):
    inbox = os.path.join(srv.dir, "inbox")
    env = example_env(srv, "asab", LOGS_INBOX=inbox)
    app = start_app(srv, env, 0)
    try:
        gz = drop(wait_until(lambda: os.path.isdir(inbox) and inbox, 15,
                             "the inbox"), "a.log", 1000)
        wait_until(lambda: os.path.exists(gz), 20, "a.log.gz")
        with gzip.open(gz, "rt") as f:
            assert f.read() == "".join(f"{i}\n" for i in range(1000))
        assert not os.path.exists(os.path.join(inbox, "a.log"))
        t0 = time.monotonic()
        app.send_signal(signal.SIGTERM)
        assert app.wait(10) == 0
        assert time.monotonic() - t0 < 3  # the service's grace is 1 s
        watch = srv.broker.list_tasks(handler="logs.watch")
        assert len(watch) == 1 and watch[0].forever
        assert watch[0].state in ("pending", "running")
        # Dropped while the app is down; done after its next start.
        gz2 = drop(inbox, "b.log", 10)
        app = start_app(srv, env, 1)
        wait_until(lambda: os.path.exists(gz2), 20, "b.log.gz")
        again = srv.broker.list_tasks(handler="logs.watch")
        assert [t.id for t in again] == [watch[0].id]  # one forever task
        done = srv.broker.list_tasks(handler="logs.compress", state="done")
        assert len(done) == 2
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait(5)
