"""Every blocking client op against a real broker."""

import datetime as dt
import threading
import time

import pytest

import taskbroker as tb
from taskbroker import _lib


def test_ping_returns_the_version(broker):
    assert broker.ping() == "0.1.0"


def test_submit_wait_status(broker):
    tid = broker.submit("sleep", {"ms": 300}, queue="q1", priority=3)
    t = broker.status(tid)
    assert t.id == tid and t.queue == "q1" and t.handler == "sleep"
    assert t.priority == 3 and t.state in ("pending", "running")
    t = broker.wait(tid, timeout=5)
    assert t.state == "done" and t.ok and t.ended and t.attempts == 1
    assert t.created_at <= t.started_at <= t.finished_at


def test_submit_exec_result_is_decoded(broker):
    tid = broker.submit("exec", {"argv": ["/bin/echo", "hi"]})
    res = broker.result(tid, timeout=10)  # exec output is msgpack bin
    assert res["stdout"] == b"hi\n" and res["exit_status"] == 0


def test_delay_and_run_at(broker):
    tid = broker.submit("noop", delay=0.3)
    t = broker.status(tid)
    assert t.state == "pending"
    assert t.run_at == pytest.approx(t.created_at + 0.3, abs=0.05)
    t = broker.wait(tid, 5)
    assert t.state == "done" and t.started_at - t.created_at >= 0.25
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.2)
    t2 = broker.status(broker.submit("noop", run_at=at))
    assert t2.run_at == pytest.approx(at.timestamp(), abs=0.01)
    with pytest.raises(ValueError):
        broker.submit("noop", run_at=dt.datetime.now())  # naive


def test_max_attempts_then_dead(broker):
    tid = broker.submit("fail", {"message": "boom"}, max_attempts=2)
    t = broker.wait(tid, 10)
    assert t.state == "dead" and t.attempts == 2 and "boom" in t.error
    with pytest.raises(tb.TaskFailed) as ei:
        broker.result(tid, 1)
    assert ei.value.task.id == tid and "boom" in ei.value.error


def test_timeout_per_attempt(broker):
    tid = broker.submit("sleep", {"ms": 5000}, timeout=0.2)
    t = broker.wait(tid, 5)
    assert t.state == "dead" and t.timeout == pytest.approx(0.2)


def test_key_returns_the_same_task(broker):
    broker.pause("k")
    a = broker.submit("noop", queue="k", key="once")
    b = broker.submit("noop", queue="k", key="once")
    assert a == b and broker.status(a).key == "once"


def test_forever_and_max_crashes_options(broker):
    tid = broker.submit("sleep", {"ms": 10}, forever=True, max_crashes=5)
    t = broker.status(tid)
    assert t.forever and t.max_crashes == 5
    assert broker.cancel(tid).state == "cancelled"


def test_submit_batch_all_or_nothing(broker):
    ids = broker.submit_batch(
        ["noop", tb.TaskSpec("sleep", {"ms": 1}, queue="b")])
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    assert broker.wait(ids[1], 5).queue == "b"
    with pytest.raises(tb.UnknownHandler):
        broker.submit_batch(["noop", "no-such-handler"])
    with pytest.raises(ValueError):
        broker.submit_batch([])


def test_wait_timeout_raises_with_the_task(broker):
    tid = broker.submit("sleep", {"ms": 3000})
    with pytest.raises(tb.TimedOut) as ei:
        broker.wait(tid, timeout=0.1)
    assert isinstance(ei.value, TimeoutError)
    assert ei.value.task.id == tid and not ei.value.task.ended
    broker.cancel(tid)


def test_cancel_and_wrong_state(broker):
    tid = broker.submit("sleep", {"ms": 10000})
    assert broker.cancel(tid).state == "cancelled"
    with pytest.raises(tb.WrongState):
        broker.cancel(tid)
    with pytest.raises(tb.TaskCancelled):
        broker.result(tid, 1)


def test_retry_and_retry_queue(broker):
    tid = broker.submit("fail", queue="r")
    assert broker.wait(tid, 5).state == "dead"
    broker.retry(tid)
    assert broker.wait(tid, 5).state == "dead"
    with pytest.raises(tb.WrongState):
        broker.retry(broker.wait(broker.submit("noop"), 5).id)
    assert broker.retry_queue("r") == 1
    with pytest.raises(ValueError):
        broker.retry_queue("r", state="nonsense")


def test_list_filters_and_pages(broker):
    ids = broker.submit_batch([tb.TaskSpec("noop", queue="l")] * 5)
    broker.drain("l", timeout=5)
    got = broker.list(queue="l", state="done", limit=3)
    assert [t.id for t in got] == ids[:3]
    rest = broker.list_tasks(queue="l", after=got[-1].id)
    assert [t.id for t in rest] == ids[3:]
    assert broker.list(handler="sleep") == []


def test_pause_resume_drain(broker):
    broker.pause("p")
    tid = broker.submit("noop", queue="p")
    assert [q for q in broker.queues() if q.name == "p"][0].paused
    with pytest.raises(tb.TimedOut):
        broker.drain("p", timeout=0.2)
    broker.resume("p")
    broker.drain("p", timeout=5)
    assert broker.status(tid).state == "done"


def test_purge_and_stats(broker):
    broker.wait(broker.submit("noop"), 5)
    st = broker.stats()
    assert st.done >= 1 and st.submitted >= 1 and st.pid > 0
    assert broker.purge(state="done") >= 1
    with pytest.raises(tb.NotFound):
        broker.status(1)


def test_schedules(broker):
    broker.schedule_add("tick", "noop", every=3600, queue="s")
    broker.schedule_add("nightly", "noop", {"x": 1}, cron="0 3 * * *")
    by = {s.name: s for s in broker.schedules()}
    assert by["tick"].every == 3600 and by["tick"].queue == "s"
    assert by["nightly"].cron == "0 3 * * *" and by["nightly"].every is None
    broker.schedule_pause("tick")
    assert {s.name: s for s in broker.schedules()}["tick"].paused
    broker.schedule_resume("tick")
    assert not {s.name: s for s in broker.schedules()}["tick"].paused
    broker.schedule_rm("tick")
    with pytest.raises(tb.NotFound):
        broker.schedule_rm("tick")
    with pytest.raises(ValueError):
        broker.schedule_add("x", "noop")


def test_errors_map_every_code():
    L = _lib.lib()
    for code in range(1, 40):
        name = _lib.s(L.tb_errname(code))
        if name == "unknown":
            continue
        err = tb.error_for_code(code, "doing x")
        assert err.code == code and err.name == name
        assert type(err) is tb.errors.BY_NAME[name]
        assert str(err) == f"doing x: {_lib.s(L.tb_strerror(code))}"
        assert isinstance(err, tb.TaskbrokerError)
    unknown = tb.error_for_code(999)
    assert type(unknown) is tb.TaskbrokerError and unknown.code == 999


def test_unknown_handler_and_bad_arguments(broker):
    with pytest.raises(tb.UnknownHandler) as ei:
        broker.submit("no-such-handler")
    assert ei.value.name == "unknown_handler" and ei.value.code == 13
    assert "no such handler" in str(ei.value)
    with pytest.raises(ValueError):
        broker.submit("noop", delay=-1)
    with pytest.raises(tb.InvalidArgument):
        broker.list(limit=100000)


def test_unreachable():
    b = tb.Broker("ipc:///nonexistent/dir/tb.sock", timeout=1)
    with pytest.raises(tb.Unreachable):
        b.ping()
    b.close()
    with pytest.raises(tb.Closed):
        b.ping()


def test_shutdown(server):
    server.broker.shutdown()
    assert server.proc.wait(10) == 0


def test_many_threads_submitting_at_once(broker):
    ids: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            mine = [broker.submit("noop") for _ in range(100)]
            with lock:
                ids.extend(mine)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(ids)) == 800
    broker.drain(timeout=10)
    assert broker.stats().done == 800


def test_events(broker):
    with broker.events("tb.done.") as sub:
        time.sleep(0.3)  # the subscription connects in the background
        tid = broker.submit("noop", queue="ev")
        ev = sub.recv(timeout=5)
        assert ev is not None and ev.name == "done" and ev.task_id == tid
        assert ev.topic == "tb.done.ev.noop" and ev.state == "done"
        assert ev.queue == "ev" and ev.handler == "noop"
        assert sub.recv(timeout=0.1) is None
    with broker.events() as sub:
        time.sleep(0.3)
        tid = broker.submit("noop")
        names = []
        for ev in sub:
            if ev.task_id == tid:
                names.append(ev.name)
                if ev.name == "done":
                    break
        assert names == ["start", "done"]
