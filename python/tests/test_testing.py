"""taskbroker.testing: the broker fixture, run_broker and wait_all."""

import os
import signal

import pytest

import taskbroker as tb
from taskbroker.testing import BrokerProcess, broker_binary, run_broker


def test_run_broker_starts_and_stops_by_pid():
    with run_broker("--workers=2") as srv:
        pid, d = srv.pid, srv.dir
        assert srv.broker.ping() == "0.1.0"
        assert srv.broker.stats().pid == pid
        assert srv.env()["TASKBROKER_URL"] == srv.url
    assert srv.proc.returncode == 0  # SIGTERM: a graceful exit
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(d)


def test_stop_kills_a_broker_that_ignores_sigterm():
    srv = BrokerProcess(stop_grace=0.5).start()
    os.kill(srv.pid, signal.SIGSTOP)  # cannot act on SIGTERM
    assert srv.stop() == -signal.SIGKILL


def test_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TB_BROKER_BIN", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="TB_BROKER_BIN"):
        broker_binary()


def test_bad_broker_arguments_fail_start():
    with pytest.raises(RuntimeError, match="exited"):
        with run_broker("--no-such-option"):
            pass


def test_fixture_gives_a_fresh_broker(taskbroker_server, taskbroker_client):
    assert taskbroker_client is taskbroker_server.broker
    assert taskbroker_client.stats().submitted == 0


def test_wait_all_sync(broker):
    with broker.wait_all() as w:
        broker.submit("sleep", {"ms": 50})
        broker.submit_batch(["noop", "noop"])
    assert len(w.tasks) == 3 and all(t.state == "done" for t in w.tasks)
    with pytest.raises(tb.TaskFailed) as ei:
        with broker.wait_all():
            broker.submit("fail", {"message": "x1"})
            broker.submit("noop")
    assert "1 of 2 tasks" in str(ei.value)
    with pytest.raises(tb.TimedOut):
        with broker.wait_all(timeout=0.2):
            broker.submit("sleep", {"ms": 3000})
    # Outside any block nothing is tracked.
    broker.submit("noop")
    assert broker._trackers == []


def test_wait_all_does_not_wait_when_the_block_raises(broker):
    with pytest.raises(KeyError):
        with broker.wait_all():
            broker.submit("sleep", {"ms": 3000})
            raise KeyError("x")
