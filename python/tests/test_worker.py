"""python3 -m taskbroker worker: real worker processes on a real broker."""

import os
import signal
import time

import pytest

import taskbroker as tb
from taskbroker import _lib
from taskbroker.testing import run_broker

import worker_app

pytestmark = pytest.mark.skipif(
    not _lib.has("tb_worker_open"),
    reason="this libtaskbroker has no worker API")

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def wsrv():
    with run_broker(f"--worker-handler={worker_app.HANDLERS}",
                    "--worker-cancel-grace=2s") as srv:
        yield srv


def start(srv, *args):
    return srv.start_worker("worker_app:broker", "--grace=2", *args,
                            env={"PYTHONPATH": HERE})


def test_sync_and_async_tasks_return_results(wsrv):
    start(wsrv)
    b = wsrv.broker
    h1 = b.submit("py.add", payload_bytes=tb.pack({"args": [2, 3],
                                                  "kwargs": {}}))
    assert b.result(h1, 15) == 5
    h2 = b.submit("py.aadd", payload_bytes=tb.pack({"args": [1],
                                                   "kwargs": {"b": 2}}))
    assert b.result(h2, 15) == {"sum": 3}


def test_failure_traceback_and_retry_policy(wsrv):
    start(wsrv)
    b = wsrv.broker
    p = tb.pack({"args": ["bad thing"], "kwargs": {}})
    t = b.wait(b.submit("py.boom", payload_bytes=p, max_attempts=2), 15)
    assert t.state == "dead" and t.attempts == 2
    assert "Traceback" in t.error and "ValueError: bad thing" in t.error
    t = b.wait(b.submit("py.reject", max_attempts=5), 15)
    assert t.state == "dead" and t.attempts == 1
    assert "Reject: this cannot work" in t.error
    with open(os.path.join(wsrv.dir, "worker0.log")) as f:
        log = f.read()
    assert "py.boom attempt 2 failed" in log and "ValueError: bad" in log
    t = b.wait(b.submit("py.flaky", max_attempts=3), 15)
    assert t.state == "done" and t.result == 2


def test_cancel_reaches_sync_and_async_tasks(wsrv):
    start(wsrv, "--concurrency=4")
    b = wsrv.broker
    p = tb.pack({"args": [30], "kwargs": {}})
    ids = [b.submit("py.slow_sync", payload_bytes=p),
           b.submit("py.slow_async", payload_bytes=p)]
    deadline = time.monotonic() + 15
    while any(b.status(i).state != "running" for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    for i in ids:
        assert b.cancel(i).state == "cancelled"
    assert time.monotonic() - t0 < 2  # well inside the cancel grace


def test_timeout_reaches_an_async_task(wsrv):
    start(wsrv)
    b = wsrv.broker
    p = tb.pack({"args": [30], "kwargs": {}})
    t = b.wait(b.submit("py.slow_async", payload_bytes=p, timeout=0.3), 15)
    assert t.state == "dead" and t.finished_at - t.started_at < 2


def test_sigterm_lets_running_tasks_finish(wsrv):
    w = start(wsrv)
    b = wsrv.broker
    p = tb.pack({"args": [0.5], "kwargs": {}})
    tid = b.submit("py.slow_sync", payload_bytes=p)
    deadline = time.monotonic() + 15
    while b.status(tid).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(w.pid, signal.SIGTERM)
    assert w.wait(10) == 0
    t = b.status(tid)
    assert t.state == "done" and t.result == "finished"


def test_sigterm_hands_back_what_outlives_the_grace(wsrv):
    w = start(wsrv)
    b = wsrv.broker
    p = tb.pack({"args": [30], "kwargs": {}})
    tid = b.submit("py.slow_async", payload_bytes=p)
    deadline = time.monotonic() + 15
    while b.status(tid).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    t0 = time.monotonic()
    os.kill(w.pid, signal.SIGTERM)
    assert w.wait(10) == 0
    assert time.monotonic() - t0 < 5
    t = b.status(tid)
    assert t.state == "pending" and t.attempts == 0 and t.crashes == 0


def test_second_sigint_stops_at_once(wsrv):
    w = start(wsrv, "--grace=30")
    b = wsrv.broker
    p = tb.pack({"args": [30], "kwargs": {}})
    tid = b.submit("py.slow_async", payload_bytes=p)
    deadline = time.monotonic() + 15
    while b.status(tid).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(w.pid, signal.SIGINT)
    time.sleep(0.2)
    t0 = time.monotonic()
    os.kill(w.pid, signal.SIGINT)
    assert w.wait(5) == 130
    assert time.monotonic() - t0 < 2


def test_defer_to_a_worker(wsrv):
    start(wsrv)
    b = wsrv.broker

    @b.task(name="py.add")
    def add(a: int, b: int) -> int:
        return a + b

    assert add.defer(20, 22).result(15) == 42


def test_run_broker_with_a_worker():
    with run_broker(f"--worker-handler={worker_app.HANDLERS}",
                    worker="worker_app", worker_env={"PYTHONPATH": HERE}
                    ) as srv:
        b = srv.broker
        with b.wait_all() as w:
            for i in range(20):
                b.submit("py.add",
                         payload_bytes=tb.pack({"args": [i, 1],
                                                "kwargs": {}}))
        assert sorted(t.result for t in w.tasks) == list(range(1, 21))
        pid = srv.workers[0].pid
    assert srv.workers[0].returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_many_async_tasks_through_one_worker(wsrv):
    start(wsrv, "--concurrency=64")
    b = wsrv.broker
    p = tb.pack({"args": [1, 2], "kwargs": {}})
    t0 = time.monotonic()
    ids = []
    for _ in range(2):
        ids += b.submit_batch([tb.TaskSpec("py.aadd", payload_bytes=p)]
                              * 1000)
    b.drain(timeout=60)
    rate = len(ids) / (time.monotonic() - t0)
    assert b.stats().done == 2000
    print(f"{rate:.0f} async no-op tasks/s through one worker")


@pytest.mark.asyncio
async def test_workers_and_worker_handlers(wsrv):
    start(wsrv, "--concurrency=7", "--name=w-test")
    b = wsrv.broker
    deadline = time.monotonic() + 15
    while not b.workers():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (w,) = await b.aio.workers()
    assert w.name == "w-test" and w.slots == 7 and w.pid > 0
    assert set(w.handlers) == set(worker_app.broker.registry)
    hs = {h.name: h for h in b.worker_handlers()}
    assert hs["py.add"].workers == 1 and hs["py.add"].waiting == 0
