"""Registered task functions: ``@broker.task`` and ``fn.defer(...)``.

A task's payload is the msgpack map ``{"args": [...], "kwargs": {...}}``.
The arguments are checked against the function's signature and serialised
when the call is deferred, so a bad call fails in the caller, not later in
a worker. msgpack has no tuples or sets: a tuple arrives as a list, and a
set, an object or a datetime cannot be deferred (pass ids, strings, lists,
maps, numbers, bytes).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import threading
import time
import traceback
from typing import (
    TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar,
)

from .client import Duration, Task, _result_of, pack, unpack
from .errors import ArgumentError

if TYPE_CHECKING:
    from .client import Broker

from typing import ParamSpec

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["TaskFunction", "TaskHandle", "Reject", "NoRetry",
           "current_task", "TaskContext", "handler_name",
           "encode_call", "decode_call"]


class Reject(Exception):
    """Raise from a task to fail it without a retry, whatever its
    ``max_attempts``: the task ends ``dead`` with this message."""


NoRetry = Reject  # the other name people look for


@dataclasses.dataclass
class TaskContext:
    """What a running task can know about itself (:func:`current_task`).

    ``cancelled`` becomes true when the broker asks the attempt to stop (a
    cancel, its timeout, a shutdown): a sync task should check it and
    return soon; an async task gets ``CancelledError`` instead."""

    id: int
    attempt: int
    handler: str
    queue: str
    deadline: Optional[float] = None  # Unix seconds, None: no timeout
    _cancel: threading.Event = dataclasses.field(
        default_factory=threading.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


_current: contextvars.ContextVar[Optional[TaskContext]] = \
    contextvars.ContextVar("taskbroker_current_task", default=None)


def current_task() -> Optional[TaskContext]:
    """The task running in this thread or asyncio task (in a worker, or
    eagerly), else ``None``."""
    return _current.get()


def handler_name(fn: Callable[..., Any]) -> str:
    """The default handler name of fn: ``module:qualname``."""
    mod: str = getattr(fn, "__module__", None) or "__main__"
    qn: str = getattr(fn, "__qualname__", None) or \
        getattr(fn, "__name__", None) or ""
    if "<locals>" in qn or "<lambda>" in qn:
        raise ValueError(
            f"{qn} cannot be a task: a worker must import it by name, so "
            "define it at module level (or give name=...)")
    return f"{mod}:{qn}"


def _find_unpackable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    def bad(x: Any) -> bool:
        try:
            pack(x)
            return False
        except Exception:
            return True

    for i, a in enumerate(args):
        if bad(a):
            return f"positional argument {i} ({type(a).__name__}: {a!r:.60})"
    for k, v in kwargs.items():
        if bad(v):
            return f"argument {k!r} ({type(v).__name__}: {v!r:.60})"
    return "an argument"


def encode_call(name: str, sig: Optional[inspect.Signature],
                args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Check args against sig and serialise them as a task payload; raise
    :class:`ArgumentError` for a call that does not fit or cannot be
    serialised."""
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            raise ArgumentError(f"cannot defer {name}: {e}") from None
    try:
        return pack({"args": list(args), "kwargs": kwargs})
    except Exception as e:
        raise ArgumentError(
            f"cannot defer {name}: {_find_unpackable(args, kwargs)} cannot "
            f"be serialised with msgpack ({e}); pass plain data (str, int, "
            "float, bool, None, bytes, list, dict) such as an id instead"
        ) from None


def decode_call(payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """The (args, kwargs) of a task payload written by :func:`encode_call`."""
    if not payload:
        return [], {}
    obj = unpack(payload)
    if not isinstance(obj, dict):
        raise ValueError("task payload is not a map {args, kwargs}")
    args = obj.get("args") or []
    kwargs = obj.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("task payload's args/kwargs have the wrong types")
    return args, kwargs


_OPTION_NAMES = ("queue", "priority", "delay", "run_at", "max_attempts",
                 "timeout", "key", "forever", "max_crashes")


class TaskHandle:
    """A deferred task: its ``id``, :meth:`status`, :meth:`result` and
    ``await`` :meth:`aresult`."""

    def __init__(self, broker: "Broker", task_id: int,
                 name: str = "") -> None:
        self.broker = broker
        self.id = task_id
        self.name = name

    def status(self) -> Task:
        """The task's current state."""
        return self.broker.status(self.id)

    def wait(self, timeout: Duration = None) -> Task:
        """Wait for the task to end and return it (``TimedOut`` if not)."""
        return self.broker.wait(self.id, timeout)

    def result(self, timeout: Duration = None) -> Any:
        """Wait for the task and return its result; raise ``TaskFailed``
        (its error, with the worker's traceback) or ``TaskCancelled``."""
        return self.broker.result(self.id, timeout)

    async def aresult(self, timeout: Duration = None) -> Any:
        """:meth:`result` without blocking the event loop."""
        return await self.broker.aio.result(self.id, timeout)

    def cancel(self) -> Task:
        """Cancel the task."""
        return self.broker.cancel(self.id)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name} id={self.id}>"


class EagerHandle(TaskHandle):
    """The handle of a task run in-process at defer time (eager mode)."""

    def __init__(self, broker: "Broker", task: Task) -> None:
        super().__init__(broker, task.id, task.handler)
        self.task = task

    def status(self) -> Task:
        return self.task

    def wait(self, timeout: Duration = None) -> Task:
        return self.task

    def result(self, timeout: Duration = None) -> Any:
        return _result_of(self.task)

    async def aresult(self, timeout: Duration = None) -> Any:
        return _result_of(self.task)

    def cancel(self) -> Task:
        return self.task


_eager_ids = iter(range(1, 1 << 62))
_eager_lock = threading.Lock()


def _eager_task(name: str, queue: str, state: str, result: Any,
                error: Optional[str], t0: float) -> Task:
    with _eager_lock:
        tid = next(_eager_ids)
    now = time.time()
    return Task(id=tid, state=state, attempts=1, max_attempts=1, crashes=0,
                max_crashes=0, priority=0, queue=queue, handler=name,
                result=result, error=error, created_at=t0, started_at=t0,
                finished_at=now, run_at=t0, timeout=None, forever=False,
                key=None)


class _Bound:
    """Shared defer logic of a TaskFunction and its options() views."""

    tf: "TaskFunction[Any, Any]"
    opts: dict[str, Any]

    def _submit_opts(self) -> dict[str, Any]:
        return {k: v for k, v in self.opts.items() if v is not None}

    def defer(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Check and serialise the call, submit it, return its handle."""
        tf = self.tf
        payload = encode_call(tf.name, tf.signature, args, kwargs)
        if tf.broker.eager:
            return tf._run_eager(payload, self.opts)
        tid = tf.broker.submit(tf.name, payload_bytes=payload,
                               **self._submit_opts())
        return TaskHandle(tf.broker, tid, tf.name)

    async def adefer(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """:meth:`defer` without blocking the event loop."""
        tf = self.tf
        payload = encode_call(tf.name, tf.signature, args, kwargs)
        if tf.broker.eager:
            return await tf._arun_eager(payload, self.opts)
        tid = await tf.broker.aio.submit(tf.name, payload_bytes=payload,
                                         **self._submit_opts())
        return TaskHandle(tf.broker, tid, tf.name)


class TaskOptions(_Bound):
    """A task function with some options overridden (``fn.options(...)``)."""

    def __init__(self, tf: "TaskFunction[Any, Any]",
                 opts: dict[str, Any]) -> None:
        self.tf = tf
        self.opts = opts

    def options(self, **overrides: Any) -> "TaskOptions":
        """Override more options."""
        return TaskOptions(self.tf, _merge(self.opts, overrides))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as the task function does."""
        return self.tf.fn(*args, **kwargs)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    bad = set(overrides) - set(_OPTION_NAMES)
    if bad:
        raise TypeError(f"unknown task option(s) {sorted(bad)}; known: "
                        f"{', '.join(_OPTION_NAMES)}")
    return {**base, **overrides}


class TaskFunction(_Bound, Generic[P, R]):
    """A function registered with :meth:`Broker.task`.

    Calling it runs the function here and now. ``defer(*args, **kwargs)``
    submits it (``adefer`` from asyncio); ``options(queue=..., delay=...,
    ...)`` overrides the registered options for one call. ``name`` is its
    handler name.
    """

    def __init__(self, broker: "Broker", fn: Callable[P, R], *,
                 name: Optional[str] = None, **opts: Any) -> None:
        self.broker = broker
        self.fn = fn
        self.name = name or handler_name(fn)
        self.tf = self
        self.opts = _merge({}, opts)
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            self.signature: Optional[inspect.Signature] = \
                inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def options(self, **overrides: Any) -> TaskOptions:
        """This task with options overridden for the calls made through
        the result: ``fn.options(queue="slow", delay=30).defer(x)``."""
        return TaskOptions(self, _merge(self.opts, overrides))

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name}>"

    # ---- eager mode --------------------------------------------------

    def _finish_eager(self, queue: str, t0: float, ok: bool, value: Any,
                      exc: Optional[BaseException]) -> EagerHandle:
        if ok:
            try:  # the result round-trips too, as from a worker
                value = unpack(pack(value))
            except Exception as e:
                exc, ok = e, False
        if ok:
            task = _eager_task(self.name, queue, "done", value, None, t0)
        else:
            assert exc is not None
            err = "".join(traceback.format_exception(exc)).rstrip()
            task = _eager_task(self.name, queue, "dead", None, err, t0)
        return EagerHandle(self.broker, task)

    def _run_eager(self, payload: bytes, opts: dict[str, Any]) -> EagerHandle:
        args, kwargs = decode_call(payload)
        queue = opts.get("queue") or "default"
        t0 = time.time()
        ctx = TaskContext(id=0, attempt=1, handler=self.name, queue=queue)
        token = _current.set(ctx)
        try:
            if self.is_async:
                try:
                    asyncio.get_running_loop()
                except RuntimeError:
                    coro: Any = self.fn(*args, **kwargs)
                    value: Any = asyncio.run(coro)
                else:
                    raise RuntimeError(
                        f"{self.name} is async: in eager mode inside a "
                        "running event loop use 'await fn.adefer(...)'")
            else:
                value = self.fn(*args, **kwargs)
        except RuntimeError as e:
            if "eager mode inside" in str(e):
                raise
            return self._finish_eager(queue, t0, False, None, e)
        except Exception as e:
            return self._finish_eager(queue, t0, False, None, e)
        finally:
            _current.reset(token)
        return self._finish_eager(queue, t0, True, value, None)

    async def _arun_eager(self, payload: bytes,
                          opts: dict[str, Any]) -> EagerHandle:
        if not self.is_async:
            return self._run_eager(payload, opts)
        args, kwargs = decode_call(payload)
        queue = opts.get("queue") or "default"
        t0 = time.time()
        ctx = TaskContext(id=0, attempt=1, handler=self.name, queue=queue)
        token = _current.set(ctx)
        try:
            coro: Any = self.fn(*args, **kwargs)
            value = await coro
        except Exception as e:
            return self._finish_eager(queue, t0, False, None, e)
        finally:
            _current.reset(token)
        return self._finish_eager(queue, t0, True, value, None)
