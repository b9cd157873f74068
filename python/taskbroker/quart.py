"""Quart drop-in: a durable ``add_background_task``.

Quart's ``app.add_background_task(func, *args, **kwargs)`` runs func in
the web process; what is still queued or running when the server stops
(a deploy, a crash, ``BACKGROUND_TASK_SHUTDOWN_TIMEOUT``) is lost. This
extension keeps Quart's signature and submits func as a task instead::

    from quart import Quart
    from taskbroker.quart import TaskBroker
    from myapp.tasks import broker, write_to_db    # @broker.task functions

    app = Quart(__name__)
    tasks = TaskBroker(app, broker)

    @app.post("/notes")
    async def create():
        data = await request.get_json()
        tasks.add_background_task(write_to_db, data["text"])
        return {"accepted": True}, 202

``TaskBroker(app, broker, replace=True)`` also puts it in place of
``app.add_background_task``, so existing handlers need no change at all.
func must be a function registered with ``@broker.task`` (or
``fn.options(...)``, or a ``functools.partial`` of either); a lambda, a
closure or an unregistered function raises :class:`NotATask` (a
``TypeError``) saying what to do, and arguments msgpack cannot carry raise
``ArgumentError``, both in the request.

In a request, the submit does not block the event loop, and the response
is sent only after the broker has stored the task (an ``after_request``
hook awaits it): a client that got its response has a durable task, and
a broker that cannot be reached makes the request fail (500) rather than
lose the job quietly. In a websocket handler, whose messages go out as it
sends them, ``await`` the returned task before acknowledging anything.
Called where no event loop runs (a sync view, which Quart runs on a
thread; a script), it submits at once and blocks.

``serve=True`` (or a list of queues) makes the web process serve tasks
too: an in-process worker (see :class:`taskbroker.worker.Worker`) starts
with the app (``before_serving``) and stops with it (``after_serving``),
handing back to the broker what it did not finish within ``grace``.

Quart is an optional dependency (``pip install 'taskbroker[quart]'``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional, Sequence, Union

from quart import Quart, Response, g, has_request_context, \
    has_websocket_context

from ._dropin import NotATask, resolve_call, start_worker
from .client import Broker
from .tasks import TaskFunction, TaskHandle, encode_call
from .worker import Worker

__all__ = ["TaskBroker", "NotATask"]

log = logging.getLogger("taskbroker.quart")

_PENDING = "_taskbroker_pending"


class TaskBroker:
    """The Quart extension (see the module doc).

    ``broker`` submits the tasks and is the one an in-process worker
    serves (its registered tasks); ``None`` submits each task through the
    Broker it was registered on. ``serve``: ``True`` serves every queue,
    a sequence of names only those, ``False`` (the default) none.
    ``concurrency``, ``threads`` and ``grace`` are the in-process
    worker's (as the worker command's options). ``replace=True`` makes
    ``app.add_background_task`` this extension's.
    """

    def __init__(self, app: Optional[Quart] = None,
                 broker: Optional[Broker] = None, *,
                 serve: Union[bool, Sequence[str]] = False,
                 concurrency: int = 16, threads: int = 4,
                 grace: float = 5.0, replace: bool = False) -> None:
        self.broker = broker
        self.serve = serve
        self.concurrency = concurrency
        self.threads = threads
        self.grace = grace
        self.replace = replace
        self.worker: Optional[Worker] = None
        self._inflight: set[asyncio.Task[TaskHandle]] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Attach to app: its lifecycle hooks and ``app.extensions``."""
        if self.serve and self.broker is None:
            raise ValueError("serve= needs broker=: the Broker whose "
                             "registered tasks the web process serves")
        app.extensions["taskbroker"] = self
        app.after_request(self._after_request)
        app.after_websocket(self._after_websocket)  # type: ignore[type-var]
        app.before_serving(self._before_serving)
        app.after_serving(self._after_serving)
        if self.replace:
            setattr(app, "add_background_task", self.add_background_task)

    # ---- submitting ------------------------------------------------------

    def add_background_task(self, func: Callable[..., Any], *args: Any,
                            **kwargs: Any
                            ) -> Union["asyncio.Task[TaskHandle]",
                                       TaskHandle]:
        """Submit ``func(*args, **kwargs)`` as a durable task.

        Quart's signature. Returns the submit as an ``asyncio.Task``
        (resolving to a :class:`~taskbroker.TaskHandle`) when called on
        the event loop, else the handle itself. Raises :class:`NotATask`
        for a func no worker could run and ``ArgumentError`` for a call
        that does not fit its signature or cannot be serialised."""
        brokers = tuple(b for b in (self.broker,) if b is not None)
        tf, opts, args, kwargs = resolve_call(func, args, kwargs, brokers)
        payload = encode_call(tf.name, tf.signature, args, kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._submit_blocking(tf, opts, payload)
        task = loop.create_task(self._submit(tf, opts, payload))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if has_request_context() or has_websocket_context():
            pending = g.get(_PENDING)
            if pending is None:
                pending = []
                setattr(g, _PENDING, pending)
            pending.append(task)
        else:
            task.add_done_callback(_log_failure)
        return task

    def _broker_for(self, tf: TaskFunction[Any, Any]) -> Broker:
        return self.broker if self.broker is not None else tf.broker

    @staticmethod
    def _opts(opts: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in opts.items() if v is not None}

    async def _submit(self, tf: TaskFunction[Any, Any],
                      opts: dict[str, Any], payload: bytes) -> TaskHandle:
        b = self._broker_for(tf)
        if b.eager:
            return await tf._arun_eager(payload, opts)
        tid = await b.aio.submit(tf.name, payload_bytes=payload,
                                 **self._opts(opts))
        return TaskHandle(b, tid, tf.name)

    def _submit_blocking(self, tf: TaskFunction[Any, Any],
                         opts: dict[str, Any], payload: bytes) -> TaskHandle:
        b = self._broker_for(tf)
        if b.eager:
            return tf._run_eager(payload, opts)
        tid = b.submit(tf.name, payload_bytes=payload, **self._opts(opts))
        return TaskHandle(b, tid, tf.name)

    async def _after_request(self, response: Response) -> Response:
        """Send the response only once the request's tasks are stored;
        a failed submit fails the request."""
        await _settle(g.get(_PENDING))
        setattr(g, _PENDING, [])
        return response

    async def _after_websocket(self, response: Optional[Response]
                               ) -> Optional[Response]:
        await _settle(g.get(_PENDING))
        setattr(g, _PENDING, [])
        return response

    # ---- lifecycle -------------------------------------------------------

    async def _before_serving(self) -> None:
        if not self.serve:
            return
        assert self.broker is not None
        self.worker = await start_worker(
            self.broker, self.serve, concurrency=self.concurrency,
            threads=self.threads, grace=self.grace, framework="quart")

    async def _after_serving(self) -> None:
        if self._inflight:  # submits still on their way: let them land
            await asyncio.wait(set(self._inflight), timeout=self.grace)
        w, self.worker = self.worker, None
        if w is not None:
            await w.stop()


async def _settle(pending: Optional[list["asyncio.Task[TaskHandle]"]]
                  ) -> None:
    """Wait for every submit of pending; raise the first failure."""
    if not pending:
        return
    results = await asyncio.gather(*pending, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _log_failure(task: "asyncio.Task[TaskHandle]") -> None:
    if task.cancelled():
        return
    e = task.exception()
    if e is not None:
        log.error("add_background_task: submit failed: %s", e)
