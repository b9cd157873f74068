"""taskbroker.aiohttp.broker_ctx and examples/aiohttp: aiohttp's test
server, loopback servers started here, a real broker and a real worker."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import taskbroker as tb
from taskbroker import _lib
from taskbroker.aiohttp import BROKER, broker_ctx
from taskbroker.testing import run_broker

from procs import EXAMPLES, example_env

pytestmark = pytest.mark.skipif(
    not _lib.has("tb_worker_open"),
    reason="this libtaskbroker has no worker API")


async def until(cond, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = await cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
def srv():
    with run_broker("--worker-handler=relay.fetch,relay.post,ah.echo") as s:
        yield s


@pytest.fixture
def example(srv, monkeypatch):
    """examples/aiohttp's modules, imported afresh for srv."""
    monkeypatch.setenv("TASKBROKER_URL", srv.url)
    monkeypatch.setenv("TASKBROKER_EVENTS_URL", srv.events_url)
    path = os.path.join(EXAMPLES, "aiohttp")
    monkeypatch.syspath_prepend(path)
    for name in ("tasks", "app"):
        sys.modules.pop(name, None)
    app = importlib.import_module("app")
    yield app
    for name in ("tasks", "app"):
        sys.modules.pop(name, None)


@pytest.mark.asyncio
async def test_example_relays_a_posted_url(srv, example):
    srv.start_worker("tasks", "--grace=2", env=example_env(srv, "aiohttp"))
    body = b"relayed content " * 500

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=body)

    source = web.Application()
    source.router.add_get("/data", data)
    async with TestServer(source, host="127.0.0.1") as src, \
            TestClient(TestServer(example.make_app(),
                                  host="127.0.0.1")) as client:
        url = str(src.make_url("/data"))
        r = await client.post("/jobs", json={
            "url": url, "forward_to": str(client.make_url("/inbox"))})
        assert r.status == 202
        tid = (await r.json())["id"]

        async def inbox():
            return await (await client.get("/inbox")).json()

        got = await until(inbox, 20, "the content posted on to /inbox")
        assert got == [{"source": url, "length": len(body),
                        "text": body.decode()}]
        r = await client.get(f"/jobs/{tid}")
        job = await r.json()
        assert job["state"] == "done" and job["result"] == len(body)
        assert (await client.get("/jobs/999999")).status == 404
        app = client.server.app
        assert isinstance(app[BROKER], tb.AsyncBroker)
    posts = srv.broker.list_tasks(handler="relay.post")
    assert [t.state for t in posts] == ["done"]


@pytest.mark.asyncio
async def test_broker_ctx_checks_the_broker_at_start(srv):
    app = web.Application()
    app.cleanup_ctx.append(broker_ctx(srv.url))
    async with TestServer(app, host="127.0.0.1"):
        ab = app[BROKER]
        assert await ab.ping() == "0.1.0"
    with pytest.raises(tb.Closed):  # made from a URL: closed at cleanup
        await ab.ping()
    srv.stop()
    app = web.Application()
    app.cleanup_ctx.append(broker_ctx(srv.url))
    with pytest.raises(tb.TaskbrokerError):  # no broker: no app
        async with TestServer(app, host="127.0.0.1"):
            pass


@pytest.mark.asyncio
async def test_broker_ctx_serves_tasks_in_process(srv):
    b = srv.client()
    ran = []

    @b.task(name="ah.echo")
    async def echo(text: str) -> str:
        ran.append(text)
        return text.upper()

    async def submit(request: web.Request) -> web.Response:
        h = await echo.adefer(request.match_info["text"])
        return web.json_response({"id": h.id})

    app = web.Application()
    app.cleanup_ctx.append(broker_ctx(b, serve=True, grace=1))
    app.router.add_post("/echo/{text}", submit)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        ids = []
        for word in ("a", "b", "c"):
            r = await client.post(f"/echo/{word}")
            ids.append((await r.json())["id"])
        results = [await b.aio.result(i, 15) for i in ids]
    assert results == ["A", "B", "C"] and sorted(ran) == ["a", "b", "c"]
    assert b.ping() == "0.1.0"  # a Broker passed in is left open
