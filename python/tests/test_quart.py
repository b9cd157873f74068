"""taskbroker.quart.TaskBroker in a real Quart app (its test client) on a
real broker: a durable add_background_task with Quart's signature."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest
from quart import Quart

import taskbroker as tb
from taskbroker.quart import NotATask, TaskBroker

from taskbroker.testing import run_broker

from procs import wait_until


@pytest.fixture
def server():
    """A broker that knows this file's handler names before any worker
    connects (as --worker-handler tells it)."""
    with run_broker("--worker-handler=q.note,q.anote,q.slow") as srv:
        yield srv


def note(text: str, n: int = 1) -> None:
    """A plain module-level function: registered per test below."""


def make(server, **kw):
    """A Quart app and its extension on server's broker, with the tasks
    q.note (sync) and q.anote (async) registered on that broker."""
    b = server.client()
    ran: list = []
    lock = threading.Lock()

    @b.task(name="q.note")
    def rec(text: str, n: int = 1) -> str:
        with lock:
            ran.append((text, n))
        return text

    @b.task(name="q.anote")
    async def arec(text: str) -> str:
        await asyncio.sleep(0)
        ran.append((text, "async"))
        return text

    app = Quart(__name__)
    ext = TaskBroker(app, b, **kw)
    return app, ext, b, rec, arec, ran


@pytest.mark.asyncio
async def test_post_submits_and_the_web_process_serves_it(server):
    app, ext, b, rec, arec, ran = make(server, serve=True, grace=2)

    @app.post("/notes/<text>")
    async def create(text: str):
        ext.add_background_task(rec, text, n=2)
        ext.add_background_task(arec, text)
        return {"accepted": True}, 202

    async with app.test_app() as ta:
        assert ext.worker is not None  # started with the app
        client = ta.test_client()
        async with b.wait_all(timeout=20):
            for i in range(10):
                r = await client.post(f"/notes/n{i}")
                assert r.status_code == 202
        assert len(ran) == 20 and set(ran) == {
            *((f"n{i}", 2) for i in range(10)),
            *((f"n{i}", "async") for i in range(10))}
    assert ext.worker is None  # stopped with the app
    st = b.stats()
    assert st.submitted == 20 and st.done == 20


@pytest.mark.asyncio
async def test_response_waits_for_the_stored_task(server):
    app, ext, b, rec, arec, ran = make(server)
    ids = []

    @app.post("/")
    async def create():
        h = await ext.add_background_task(rec, "x")  # awaitable: the handle
        ids.append(h.id)
        return {"id": h.id}, 202

    async with app.test_app() as ta:
        r = await ta.test_client().post("/")
        assert r.status_code == 202
        tid = (await r.get_json())["id"]
    assert ids == [tid]
    t = b.status(tid)  # stored before the response: no worker ran it
    assert t.state == "pending" and t.handler == "q.note"


@pytest.mark.asyncio
async def test_unreachable_broker_fails_the_request(server):
    app, ext, b, rec, arec, ran = make(server)
    b._timeout_ms = 500

    @app.post("/")
    async def create():
        ext.add_background_task(rec, "lost?")
        return {"accepted": True}, 202

    server.stop()  # no broker any more
    async with app.test_app() as ta:
        r = await ta.test_client().post("/")
    assert r.status_code == 500  # not a 202 for a job nobody stored


@pytest.mark.asyncio
async def test_partial_options_replace_and_sync_views(server):
    app, ext, b, rec, arec, ran = make(server, replace=True)

    @app.post("/partial")
    async def partial():
        ext.add_background_task(functools.partial(rec, "p"), n=3)
        ext.add_background_task(rec.options(queue="other", priority=4), "o")
        return "", 202

    @app.post("/replaced")
    async def replaced():
        app.add_background_task(arec, "r")  # Quart's own name, now durable
        return "", 202

    @app.post("/sync")
    def sync_view():  # Quart runs it on a thread: a blocking submit
        h = ext.add_background_task(rec, "s")
        assert isinstance(h, tb.TaskHandle)
        return {"id": h.id}, 202

    async with app.test_app() as ta:
        c = ta.test_client()
        for path in ("/partial", "/replaced", "/sync"):
            assert (await c.post(path)).status_code == 202
    tasks = {(t.handler, t.queue, t.priority) for t in b.list_tasks()}
    assert tasks == {("q.note", "default", 0), ("q.note", "other", 4),
                     ("q.anote", "default", 0)}
    assert len(b.list_tasks()) == 4
    assert not ran  # nothing ran in this process


@pytest.mark.asyncio
async def test_what_no_worker_could_run_is_a_clear_error(server):
    app, ext, b, rec, arec, ran = make(server)
    secret = object()

    def closure() -> None:
        print(secret)

    async with app.test_app():
        for bad in (lambda: None, closure, note, print):
            with pytest.raises(NotATask) as ei:
                ext.add_background_task(bad)
            msg = str(ei.value)
            assert "@broker.task" in msg and "not a registered task" in msg
        with pytest.raises(NotATask, match="a lambda"):
            ext.add_background_task(lambda: None)
        with pytest.raises(NotATask, match="closure"):
            ext.add_background_task(closure)
        # Arguments are checked and serialised in the caller.
        with pytest.raises(tb.ArgumentError, match="argument 'n'"):
            ext.add_background_task(rec, "x", n=secret)
        with pytest.raises(tb.ArgumentError, match="unexpected keyword"):
            ext.add_background_task(rec, "x", m=1)
    assert b.stats().submitted == 0


def test_serve_needs_a_broker():
    with pytest.raises(ValueError, match="broker="):
        TaskBroker(Quart(__name__), serve=True)


@pytest.mark.asyncio
async def test_in_process_worker_hands_back_at_shutdown(server):
    b = server.client()

    @b.task(name="q.slow")
    async def slow() -> None:
        await asyncio.sleep(30)

    app = Quart(__name__)
    ext = TaskBroker(app, b, serve=["slowq"], grace=0.3)
    async with app.test_app():
        assert ext.worker is not None and ext.worker.queues == ("slowq",)
        tid = (await slow.options(queue="slowq").adefer()).id
        await asyncio.to_thread(
            wait_until, lambda: b.status(tid).state == "running", 15,
            "the task to run in the web process")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
    assert loop.time() - t0 < 3
    t = b.status(tid)
    assert t.state == "pending" and t.attempts == 0  # handed back


@pytest.mark.asyncio
async def test_eager_mode_runs_in_the_request():
    b = tb.Broker(eager=True)  # no broker process at all
    ran = []

    @b.task(name="q.eager")
    def rec(text: str) -> str:
        ran.append(text)
        return text * 2

    app = Quart(__name__)
    ext = TaskBroker(app, b)

    @app.post("/")
    async def create():
        h = await ext.add_background_task(rec, "ab")
        return {"result": h.result()}, 202

    async with app.test_app() as ta:
        r = await ta.test_client().post("/")
        assert (await r.get_json()) == {"result": "abab"}
    assert ran == ["ab"]
    with pytest.raises(tb.ArgumentError):  # still checked and serialised
        ext.add_background_task(rec, {1, 2})
