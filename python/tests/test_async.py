"""The asyncio client: no blocking of the loop, hundreds in flight."""

import asyncio
import threading
import time

import pytest

import taskbroker as tb


@pytest.mark.asyncio
async def test_async_submit_wait_result(broker):
    a = broker.aio
    tid = await a.submit("exec", {"argv": ["/bin/echo", "x"]}, queue="aq")
    t = await a.wait(tid, 5)
    assert t.state == "done" and t.queue == "aq"
    assert (await a.result(tid, 1))["stdout"] == b"x\n"


@pytest.mark.asyncio
async def test_hundreds_in_flight(broker):
    a = broker.aio
    ids = await asyncio.gather(*(a.submit("noop") for _ in range(500)))
    assert len(set(ids)) == 500
    tasks = await asyncio.gather(*(a.wait(i, 10) for i in ids))
    assert {t.state for t in tasks} == {"done"}
    # No submit or wait used a thread of the pool: only the first dial did.
    names = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("asyncio_") for n in names)


@pytest.mark.asyncio
async def test_async_batch_and_errors(broker):
    a = tb.AsyncBroker(broker)
    ids = await a.submit_batch(["noop", tb.TaskSpec("noop", queue="ab")])
    assert len(ids) == 2
    with pytest.raises(tb.UnknownHandler):
        await a.submit("no-such-handler")
    with pytest.raises(tb.UnknownHandler):
        await a.submit_batch(["no-such-handler"])
    with pytest.raises(tb.NotFound):
        await a.wait(987654, 1)
    tid = await a.submit("sleep", {"ms": 2000})
    with pytest.raises(tb.TimedOut) as ei:
        await a.wait(tid, 0.1)
    assert ei.value.task.id == tid
    with pytest.raises(tb.TaskFailed):
        await a.result(await a.submit("fail"), 5)


@pytest.mark.asyncio
async def test_loop_is_never_blocked(broker):
    """A ticker keeps running while long waits and pool ops are in flight."""
    a = broker.aio
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tk = asyncio.create_task(ticker())
    tid = await a.submit("sleep", {"ms": 500})
    t0 = time.monotonic()
    await asyncio.gather(a.wait(tid, 5), a.drain(timeout=5))
    elapsed = time.monotonic() - t0
    tk.cancel()
    assert ticks >= elapsed / 0.01 * 0.5


@pytest.mark.asyncio
async def test_other_ops_run_on_the_private_pool(broker):
    a = broker.aio
    seen = []

    def probe() -> str:
        seen.append(threading.current_thread().name)
        return "ok"

    assert await a._call(probe) == "ok"
    assert seen[0].startswith("taskbroker-io")
    assert (await a.ping()) == "0.1.0"
    st = await a.stats()
    assert isinstance(st, tb.Stats)
    await a.pause("x")
    assert [q.paused for q in await a.queues() if q.name == "x"] == [True]
    await a.resume("x")
    tid = await a.submit("sleep", {"ms": 5000})
    assert (await a.status(tid)).id == tid
    assert (await a.cancel(tid)).state == "cancelled"
    await a.retry(tid)
    assert len(await a.list(limit=5)) >= 1
    await a.schedule_add("s", "noop", every=60)
    assert [s.name for s in await a.schedules()] == ["s"]
    await a.schedule_rm("s")
    await a.cancel(tid)
    assert await a.purge(state="cancelled") >= 1


@pytest.mark.asyncio
async def test_async_events(broker):
    a = broker.aio
    async with a.events("tb.done.") as sub:
        await asyncio.sleep(0.3)
        tid = await a.submit("noop")
        ev = await sub.recv(timeout=5)
        assert ev is not None and ev.task_id == tid and ev.name == "done"
        tid2 = await a.submit("noop")
        async for ev in sub:
            if ev.task_id == tid2:
                break


@pytest.mark.asyncio
async def test_async_wait_all(broker):
    a = broker.aio
    async with broker.wait_all() as w:
        for _ in range(20):
            await a.submit("sleep", {"ms": 10})
    assert len(w.tasks) == 20 and all(t.ok for t in w.tasks)
    with pytest.raises(tb.TaskFailed) as ei:
        async with broker.wait_all():
            await a.submit("noop")
            await a.submit("fail", {"message": "nope"})
    assert len(ei.value.failures) == 1 and "nope" in str(ei.value)


@pytest.mark.asyncio
async def test_async_unreachable():
    a = tb.AsyncBroker("ipc:///nonexistent/dir/tb.sock", timeout=1)
    with pytest.raises(tb.Unreachable):
        await a.submit("noop")
    await a.close()


def test_one_connection_per_event_loop_and_closed_loops_freed(broker):
    async def go() -> tb.Task:
        return await broker.aio.wait(await broker.aio.submit("noop"), 5)

    for _ in range(3):
        assert asyncio.run(go()).ok
    # Each asyncio.run made a loop and closed it; only the last one's
    # connection is still held.
    assert len(broker._aconns) == 1
