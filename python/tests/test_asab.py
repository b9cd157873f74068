"""taskbroker.asab.TaskBrokerService in a real ASAB application
(asab_app.py, a process per case) serving its own tasks on a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from taskbroker import _lib
from taskbroker.testing import run_broker

pytestmark = pytest.mark.skipif(
    not _lib.has("tb_worker_open"),
    reason="this libtaskbroker has no worker API")

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLERS = "asab.add,asab.mul,asab.fail,asab.tick,asab.explode"


@pytest.fixture
def srv():
    with run_broker(f"--worker-handler={HANDLERS}",
                    "--forever-backoff=20ms") as s:
        yield s


def run_app(srv, *args: str, timeout: float = 40) -> dict:
    out = subprocess.run([sys.executable, os.path.join(HERE, "asab_app.py"),
                          *args], env=srv.env(), capture_output=True,
                         text=True, timeout=timeout, cwd=srv.dir)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stdout + out.stderr[-3000:]
    res = json.loads(lines[-1])
    assert "error" not in res, res["error"] + out.stderr[-3000:]
    assert "never awaited" not in out.stderr  # coroutines closed, not leaked
    return res


def test_schedule_and_task_done_on_pubsub(srv):
    res = run_app(srv, "schedule")
    assert res["done"] == [["asab.add", "done", 3], ["asab.add", "done", 5],
                           ["asab.add", "done", 7], ["asab.mul", "done", 6],
                           ["asab.mul", "done", 42]]
    assert res["dead"] == [["asab.fail", True]]
    errs = res["errors"]
    assert len(errs) == 5
    assert "Thing.method" in errs[0] and "@broker.task" in errs[0]
    assert "closure" in errs[1]
    assert "unregistered() is not a registered task's" in errs[2]
    assert "a lambda" in errs[3]
    assert errs[4].startswith("ArgumentError: ") and "argument 'a'" in errs[4]
    queues = {t.queue for t in srv.broker.list_tasks(handler="asab.mul")}
    assert queues == {"default", "other"}


def test_schedule_threadsafe_from_many_threads(srv):
    res = run_app(srv, "threadsafe", "8", "25")
    assert res["ids"] == 200
    assert res["sum"] == sum(k + i for k in range(8) for i in range(25))


def test_run_forever_is_one_forever_task_across_restarts(srv):
    path = os.path.join(srv.dir, "ticks")
    res = run_app(srv, "forever", path, "3")
    assert len(res["tasks"]) == 1 and res["tasks"][0][1] is True
    assert len(res["errors"]) == 1 and "not a coroutine" in res["errors"][0]
    tid = res["tasks"][0][0]
    t = srv.broker.status(tid)  # the app stopped: handed back, not ended
    assert t.state in ("pending", "running") and t.forever
    # The next start of the application finds the same forever task.
    with open(path) as f:
        before = len(f.readlines())
    res = run_app(srv, "forever", path, str(before + 3))
    assert res["tasks"] == [[tid, True]]


def test_run_forever_has_the_brokers_backoff_and_crashloop_report(srv):
    # --forever-backoff=20ms: the first quick restart is at once, then the
    # delay's fixed half doubles (20, 40, 80 ms, plus up to as much
    # jitter); 5 restarts within a minute (the default
    # --crashloop-restarts) are a crash loop.
    res = run_app(srv, "crashloop", os.path.join(srv.dir, "starts"))
    assert res["crashloop"] == 1
    s = res["starts"]
    gaps = [b - a for a, b in zip(s, s[1:])]
    assert len(gaps) >= 4
    assert gaps[1] >= 0.02 and gaps[2] >= 0.04 and gaps[3] >= 0.08


def test_calls_made_before_the_app_runs(srv):
    res = run_app(srv, "early", os.path.join(srv.dir, "ticks"))
    assert res == {"adds": 1, "result": 101}
