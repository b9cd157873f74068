"""examples/quart as a user runs it: hypercorn serving the app, a real
worker process, a real broker; and what kill -9 and SIGTERM of each of
them do to 50 accepted jobs (issue 10)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from taskbroker import _lib
from taskbroker.testing import run_broker

from procs import (
    HERE, Server, example_env, request, start_hypercorn, wait_until,
)

pytestmark = pytest.mark.skipif(
    not _lib.has("tb_worker_open"),
    reason="this libtaskbroker has no worker API")

N = 50


@pytest.fixture
def srv():
    with run_broker("--worker-handler=notes.write") as s:
        yield s


@pytest.fixture
def env(srv):
    return example_env(srv, "quart",
                       NOTES_DB=os.path.join(srv.dir, "notes.db"))


def rows(srv) -> list[tuple]:
    path = os.path.join(srv.dir, "notes.db")
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT task_id, text, attempt FROM notes "
                            "ORDER BY task_id").fetchall()
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        conn.close()


def worker(srv, env, *args):
    return srv.start_worker("tasks", "--grace=2", *args, env=env)


def post_notes(port: int, n: int = N, seconds: float = 0.0) -> None:
    for i in range(n):
        status, body = request(port, "POST", "/notes",
                               {"text": f"note {i}", "seconds": seconds})
        assert status == 202 and body["accepted"] is True, body


def all_written(srv, n: int = N) -> None:
    got = wait_until(lambda: len(rows(srv)) == n and rows(srv), 30,
                     f"{n} notes in the table")
    assert sorted(r[1] for r in got) == sorted(f"note {i}" for i in range(n))
    st = srv.broker.stats()
    assert st.done == n and st.pending == 0 and st.running == 0


def test_example_runs_as_shown(srv, env):
    web = start_hypercorn("app:app", srv.dir, env)
    worker(srv, env)
    try:
        status, body = request(web.port, "POST", "/notes", {"text": "hello"})
        assert status == 202 and body["accepted"] is True
        wait_until(lambda: request(web.port, "GET", "/notes")[1]
                   == {"notes": ["hello"]}, 15, "the note to be written")
    finally:
        web.stop()


def test_web_process_serving_its_own_tasks(srv, env):
    env["NOTES_SERVE"] = "1"
    web = start_hypercorn("app:app", srv.dir, env)
    try:
        post_notes(web.port, 10)
        all_written(srv, 10)
        assert any(w.name.startswith("quart:") for w in srv.broker.workers())
    finally:
        assert web.stop() == 0


def test_kill9_of_the_web_server_after_50_accepted(srv, env):
    web = start_hypercorn("app:app", srv.dir, env)
    post_notes(web.port)
    web.kill9()  # the one process that served them; no worker yet
    with pytest.raises(OSError):  # nothing serves any more
        request(web.port, "GET", "/notes", timeout=2)
    assert srv.broker.stats().pending == N
    worker(srv, env)
    all_written(srv)


def test_sigterm_of_the_web_server_is_quick_and_loses_nothing(srv, env):
    worker(srv, env)
    web = start_hypercorn("app:app", srv.dir, env)
    post_notes(web.port, seconds=0.05)
    t0 = time.monotonic()
    os.kill(web.pid, signal.SIGTERM)
    assert web.proc.wait(5) == 0
    assert time.monotonic() - t0 < 1.0
    all_written(srv)


def test_kill9_of_the_worker_mid_task(srv, env):
    web = start_hypercorn("app:app", srv.dir, env)
    w = worker(srv, env)
    try:
        status, _ = request(web.port, "POST", "/notes",
                            {"text": "note 0", "seconds": 1.0})
        assert status == 202
        b = srv.broker
        tid = wait_until(lambda: [t.id for t in b.list_tasks(
            state="running")], 15, "the task to run")[0]
        os.kill(w.pid, signal.SIGKILL)
        w.wait(5)
        wait_until(lambda: b.status(tid).state == "pending", 10,
                   "the interrupted task back to pending")
        assert rows(srv) == []  # cut short before it wrote
        worker(srv, env)
        t = b.wait(tid, 20)
        assert t.state == "done" and t.crashes == 1
        assert rows(srv) == [(tid, "note 0", t.attempts)]
    finally:
        web.stop()


def test_kill9_of_the_broker_then_restart(srv, env):
    web = start_hypercorn("app:app", srv.dir, env)
    w = worker(srv, env, "--threads=4")
    try:
        post_notes(web.port, seconds=0.2)  # ~2.5 s of work on 4 threads
        wait_until(lambda: rows(srv), 15, "the worker's first note")
        assert len(rows(srv)) < N  # most still to do at the kill
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait(5)
        srv.start()  # same data directory; the worker reconnects
        all_written(srv)
        assert w.poll() is None  # the same worker did the rest
    finally:
        web.stop()


def test_hypercorn_workers_submit_from_each_child(srv, env):
    # hypercorn --workers starts its children with multiprocessing's
    # "spawn": each imports the app afresh.
    web = start_hypercorn("app:app", srv.dir, env, "--workers", "2")
    worker(srv, env)
    try:
        sent = submit_until_both_children(web, srv)
        all_written(srv, sent)
    finally:
        assert web.stop() == 0


def test_quarts_own_background_tasks_are_lost_at_kill9(srv, env):
    # The baseline of the issue: the same jobs through Quart's in-process
    # add_background_task, each still in its first second at the kill.
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(__file__)
    web = start_hypercorn("seed_quart_app:app", srv.dir, env)
    post_notes(web.port, seconds=5.0)
    web.kill9()  # the one process that held them is gone
    with pytest.raises(OSError):  # nothing serves (or writes) any more
        request(web.port, "GET", "/notes", timeout=2)
    assert rows(srv) == []  # 50 of 50 accepted jobs lost


def submit_until_both_children(web, srv) -> int:
    pids: set[int] = set()
    sent = 0

    def both_children() -> bool:
        nonlocal sent
        status, body = request(web.port, "POST", "/notes",
                               {"text": f"note {sent}"})
        assert status == 202, body
        sent += 1
        pids.add(body["pid"])
        return len(pids) == 2

    wait_until(both_children, 30, "both children to answer", interval=0)
    assert web.pid not in pids
    return sent


def test_forked_server_submits_from_each_child(srv, env):
    # A pre-fork server (as gunicorn --preload): the app and its Broker are
    # made in the parent, which then forks; each child opens its own
    # connection on first use.
    log_path = os.path.join(srv.dir, "prefork.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "prefork_server.py"),
             "app:app", "2"], cwd=srv.dir, env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
    web = Server(proc, log_path)
    worker(srv, env)
    try:
        web.wait_listening(r"listening on (\d+)")
        sent = submit_until_both_children(web, srv)
        all_written(srv, sent)
        assert "Traceback" not in web.text()
    finally:
        assert web.stop() == 0
