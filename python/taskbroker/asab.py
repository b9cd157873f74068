"""ASAB drop-in: ``TaskBrokerService``, a durable counterpart of ASAB's
``TaskService``.

ASAB's ``app.TaskService`` runs coroutines in the application's process:
``schedule(*tasks)``, ``schedule_threadsafe(*tasks)`` from another
thread, ``run_forever(*async_functions)`` for functions restarted when
they exit, and ``"TaskService.task_done!"`` published when one ends. It
keeps them in memory, so a restart or a crash loses them. This service
has the same methods, and hands each task to taskbroker instead::

    import asab
    from taskbroker.asab import TaskBrokerService
    from myapp.tasks import broker, compress, watch_inbox  # @broker.task

    class App(asab.Application):
        def __init__(self):
            super().__init__()
            self.Tasks = TaskBrokerService(self, broker=broker, serve=True)
            self.PubSub.subscribe("TaskService.task_done!", self.on_done)

        async def main(self):
            self.Tasks.schedule(compress("/var/log/big.log"))   # as ASAB
            self.Tasks.run_forever(watch_inbox)

        def on_done(self, message_type, event):
            print(event.task_id, event.state, event.result)

What may be scheduled: a coroutine made by calling a registered ``async``
task (``compress("/x")``: its arguments are read from the coroutine,
which is then closed without running here), a registered task itself (a
call without arguments), ``fn.options(...)``, or a ``functools.partial``
of those. Anything else (a bound method, a closure, a coroutine of an
unregistered function) raises :class:`NotATask` saying what to do, and
arguments msgpack cannot carry raise ``ArgumentError``: both at once, in
the caller. ASAB's own ``app.TaskService`` stays as it is, for ASAB's
modules, which schedule in-process coroutines.

- ``schedule`` (on the event loop's thread) checks and serialises at once
  and submits without blocking the loop; a failed submit is logged, as
  ASAB logs a failed task. ``await service.flush()`` waits for the
  submits in flight.
- ``schedule_threadsafe`` (from any thread) submits from the calling
  thread and returns once the broker has stored the tasks, so a caller
  knows they are durable; it raises what the submit raises.
- ``run_forever`` submits forever tasks (``forever=True``): the broker
  restarts the function whenever it ends, with its backoff, and
  quarantines it after ``max_crashes`` cut-short attempts (crash-loop
  detection). Each function (and arguments) gets an idempotency key, so
  that calling ``run_forever`` at every start of the application makes
  one forever task, not one per start.
- The broker's events for tasks that ended (``done``, ``dead``,
  ``cancelled``) of the handlers registered on ``broker`` are published
  on the application's PubSub as ``"TaskService.task_done!"`` with the
  :class:`~taskbroker.Event` (``task_id``, ``state``, ``result``,
  ``error``...). Events are best effort, as the broker's PUB socket is: a
  subscriber that must not miss one asks the broker (``broker.status``).
- ``serve=True`` (or a list of queues) runs an in-process worker for the
  broker's registered tasks, started at ``initialize`` and stopped at
  ``finalize`` (what has not finished within ``grace`` is handed back),
  so that one ASAB process is enough, as before.

ASAB is an optional dependency (``pip install 'taskbroker[asab]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from typing import Any, Optional, Sequence, Union

import asab

from ._dropin import NotATask, resolve_call, resolve_coroutine, start_worker
from .client import AsyncSubscription, Broker, Event
from .tasks import TaskFunction, encode_call
from .worker import Worker

__all__ = ["TaskBrokerService", "NotATask", "TASK_DONE"]

log = logging.getLogger("taskbroker.asab")

TASK_DONE = "TaskService.task_done!"
_ENDED = frozenset({"done", "dead", "cancelled"})

_Call = tuple[TaskFunction[Any, Any], dict[str, Any], bytes]


class TaskBrokerService(asab.Service):
    """ASAB's TaskService methods, durable (see the module doc).

    ``broker`` is the Broker the tasks are registered on (and submitted
    through); ``None`` makes one from ``$TASKBROKER_URL`` (tasks
    registered on other Brokers are then still accepted: their handler
    name is what counts). ``serve``, ``concurrency``, ``threads`` and
    ``grace`` configure the in-process worker: at ``finalize`` running
    tasks get ``grace`` seconds to finish (default 1, short because a
    forever function never does; ASAB's own TaskService cancels at once),
    then are handed back to the broker to run again. ``bridge_events=
    False`` publishes nothing on PubSub."""

    def __init__(self, app: asab.Application,
                 service_name: str = "taskbroker.TaskBrokerService", *,
                 broker: Optional[Broker] = None,
                 serve: Union[bool, Sequence[str]] = False,
                 concurrency: int = 16, threads: int = 4,
                 grace: float = 1.0, bridge_events: bool = True) -> None:
        super().__init__(app, service_name)
        self.broker = broker if broker is not None else Broker()
        self.serve = serve
        self.concurrency = concurrency
        self.threads = threads
        self.grace = grace
        self.bridge_events = bridge_events
        self.worker: Optional[Worker] = None
        self._inflight: set[asyncio.Task[int]] = set()
        self._bridge: Optional[asyncio.Task[None]] = None
        self._sub: Optional[AsyncSubscription] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Calls made before initialize (in __init__ of the app or of a
        # service, as ASAB users do), submitted at initialize.
        self._early: list[tuple[_Call, dict[str, Any]]] = []

    # ---- ASAB's lifecycle ------------------------------------------------

    async def initialize(self, app: asab.Application) -> None:
        """Start the event bridge and, if asked, the in-process worker."""
        self._loop = loop = asyncio.get_running_loop()
        early, self._early = self._early, []
        for call, extra in early:
            self._start(loop, call, extra)
        if self.bridge_events:
            self._sub = self.broker.aio.events("tb.")
            self._bridge = asyncio.ensure_future(self._run_bridge())
        if self.serve:
            self.worker = await start_worker(
                self.broker, self.serve, concurrency=self.concurrency,
                threads=self.threads, grace=self.grace, framework="asab")

    async def finalize(self, app: asab.Application) -> None:
        """Let submits in flight land, stop the worker (handing back what
        it did not finish within the grace), stop the bridge."""
        await self.flush(self.grace)
        w, self.worker = self.worker, None
        if w is not None:
            await w.stop()
        sub, self._sub = self._sub, None
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge
        if sub is not None:
            await sub.aclose()

    async def _run_bridge(self) -> None:
        assert self._sub is not None
        names = set(self.broker.registry)
        try:
            async for ev in self._sub:
                if ev.name in _ENDED and (not names or ev.handler in names):
                    self._publish(ev)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the bridge is best effort; say so once
            log.error("taskbroker events: %s; no more %s", e, TASK_DONE)

    def _publish(self, ev: Event) -> None:
        try:
            self.App.PubSub.publish(TASK_DONE, ev)
        except Exception:  # a subscriber's failure is not the bridge's
            log.exception("a %s subscriber failed", TASK_DONE)

    # ---- ASAB's TaskService API ------------------------------------------

    def schedule(self, *tasks: Any) -> None:
        """Submit tasks for execution by a worker, fire-and-forget (ASAB's
        ``schedule``). Each is checked and serialised now; the submits run
        on the event loop without blocking it. Call from the loop's thread
        (from another one use :meth:`schedule_threadsafe`); called before
        the application runs (in an ``__init__``, as ASAB allows), the
        submits start at :meth:`initialize`."""
        calls = [self._call(t, "schedule") for t in tasks]
        loop = self._loop_or_early("schedule")
        for c in calls:
            self._start_or_keep(loop, c, {})

    def schedule_threadsafe(self, *tasks: Any) -> list[int]:
        """Submit tasks from any thread (ASAB's ``schedule_threadsafe``).
        Returns their ids once the broker has stored them, so it blocks
        the calling thread for a round trip; on the event loop's own
        thread it does what :meth:`schedule` does and returns ``[]``.
        Before the application runs it submits at once too."""
        calls = [self._call(t, "schedule_threadsafe") for t in tasks]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return [self.broker.submit(tf.name, payload_bytes=p,
                                       **_opts(o)) for tf, o, p in calls]
        for c in calls:
            self._start(loop, c, {})
        return []

    def run_forever(self, *async_functions: Any) -> None:
        """Run each function for ever (ASAB's ``run_forever``): as a
        forever task, restarted by the broker with backoff whenever it
        ends, under one idempotency key per function and arguments."""
        calls = [self._call(f, "run_forever", forever=True)
                 for f in async_functions]
        loop = self._loop_or_early("run_forever")
        for tf, opts, payload in calls:
            key = "taskbroker.forever:" + tf.name
            if payload:
                key += ":" + hashlib.sha1(payload).hexdigest()[:16]
            self._start_or_keep(loop, (tf, opts, payload),
                                {"forever": True,
                                 "key": opts.get("key") or key})

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Wait (up to timeout seconds) for the submits in flight."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    # ---- helpers ---------------------------------------------------------

    def _call(self, task: Any, what: str, *, forever: bool = False) -> _Call:
        brokers = (self.broker,)
        if inspect.iscoroutine(task):
            if forever:
                task.close()
                raise NotATask(
                    f"{what}: pass the async function, not a coroutine "
                    "(it is called anew each time it ends)")
            tf, args, kwargs = resolve_coroutine(task, brokers, what=what)
            opts = dict(tf.opts)
        else:
            tf, opts, args, kwargs = resolve_call(task, (), {}, brokers,
                                                  what=what)
        if forever and not tf.is_async:
            raise NotATask(f"{what}: {tf.name} is not an async function")
        return tf, opts, encode_call(tf.name, tf.signature, args, kwargs)

    def _loop_or_early(self, what: str
                       ) -> Optional[asyncio.AbstractEventLoop]:
        """The running loop; None before initialize (the calls are kept
        until then)."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                return None
            raise RuntimeError(
                f"{what}() needs the application's event loop in this "
                "thread; from another thread use schedule_threadsafe()"
            ) from None

    def _start_or_keep(self, loop: Optional[asyncio.AbstractEventLoop],
                       call: _Call, extra: dict[str, Any]) -> None:
        if loop is None:
            self._early.append((call, extra))
        else:
            self._start(loop, call, extra)

    def _start(self, loop: asyncio.AbstractEventLoop, call: _Call,
               extra: dict[str, Any]) -> None:
        tf, opts, payload = call
        t = loop.create_task(self.broker.aio.submit(
            tf.name, payload_bytes=payload, **_opts(opts), **extra))
        self._inflight.add(t)
        t.add_done_callback(self._submitted)

    def _submitted(self, t: "asyncio.Task[int]") -> None:
        self._inflight.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("taskbroker: submit failed: %s", t.exception())


def _opts(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if v is not None}
