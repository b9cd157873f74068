"""aiohttp drop-in: a ``cleanup_ctx`` that opens the broker with the app.

aiohttp users who want work done after the response keep a deque and a
consumer task, and run blocking work on a thread pool; a restart loses the
deque. With taskbroker the queue is the broker's table and the work runs
in a worker::

    from aiohttp import web
    from taskbroker.aiohttp import BROKER, broker_ctx
    from myapp.tasks import broker, fetch         # @broker.task functions

    async def submit(request):
        h = await fetch.adefer((await request.json())["url"])
        return web.json_response({"id": h.id}, status=202)

    async def status(request):
        t = await request.app[BROKER].status(int(request.match_info["id"]))
        return web.json_response({"state": t.state})

    app = web.Application()
    app.cleanup_ctx.append(broker_ctx(broker))
    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs/{id}", status)

:func:`broker_ctx` pings the broker at start-up, so that a wrong address
or a broker that is not running stops the app from starting rather than
failing its first request; puts the :class:`~taskbroker.AsyncBroker` in
``app[BROKER]``; optionally serves tasks in the app's own process (an
in-process worker); and at cleanup stops that worker and closes the
connections it opened.

aiohttp is an optional dependency (``pip install 'taskbroker[aiohttp]'``).
"""

from __future__ import annotations

from typing import AsyncIterator, Callable, Optional, Sequence, Union

from aiohttp import web

from .client import AsyncBroker, Broker
from ._dropin import start_worker
from .worker import Worker

__all__ = ["BROKER", "broker_ctx"]

BROKER: "web.AppKey[AsyncBroker]" = web.AppKey("taskbroker", AsyncBroker)
"""Where :func:`broker_ctx` puts the app's AsyncBroker."""


def broker_ctx(broker: Union[Broker, AsyncBroker, str, None] = None, *,
               key: "web.AppKey[AsyncBroker]" = BROKER, ping: bool = True,
               serve: Union[bool, Sequence[str]] = False,
               concurrency: int = 16, threads: int = 4, grace: float = 5.0,
               close: Optional[bool] = None
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry for the broker (see the module doc).

    ``broker`` is a Broker (the one your tasks are registered on), an
    AsyncBroker, a URL, or ``None`` for ``$TASKBROKER_URL``. ``ping``
    checks the broker at start-up. ``serve`` (``True``, or a list of
    queues) runs an in-process worker for the broker's registered tasks,
    with ``concurrency``, ``threads`` and ``grace`` as the worker
    command's options. ``close``: close the Broker at cleanup; by default
    only one this helper made from a URL (a Broker you pass may be shared
    with a module's tasks and is left open)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        made = not isinstance(broker, (Broker, AsyncBroker))
        if isinstance(broker, AsyncBroker):
            b = broker.sync
        elif isinstance(broker, Broker):
            b = broker
        else:
            b = Broker(broker)
        ab = b.aio
        worker: Optional[Worker] = None
        try:
            if ping:
                await ab.ping()
            app[key] = ab
            if serve:
                worker = await start_worker(
                    b, serve, concurrency=concurrency, threads=threads,
                    grace=grace, framework="aiohttp")
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if made if close is None else close:
                await ab.close()

    return ctx
