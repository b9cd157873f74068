"""What the framework drop-ins share: turning what a framework user passes
to ``add_background_task`` / ``schedule`` into a registered task and its
arguments, with a clear error for what a worker could never run."""

from __future__ import annotations

import functools
import inspect
import os
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from .tasks import TaskFunction, TaskOptions

if TYPE_CHECKING:
    from .client import Broker
    from .worker import Worker

__all__ = ["NotATask", "resolve_call", "resolve_coroutine", "start_worker"]


async def start_worker(broker: "Broker",
                       serve: Union[bool, Iterable[str]], *,
                       concurrency: Optional[int], threads: Optional[int],
                       grace: float, framework: str) -> "Worker":
    """Start the in-process worker a drop-in's ``serve=`` asks for: every
    queue for ``True``, else the queues named. Named ``framework:pid``."""
    from .worker import Worker

    queues: tuple[str, ...] = ()
    if not isinstance(serve, bool):
        queues = tuple(serve)
    worker = Worker(broker, queues=queues, concurrency=concurrency,
                    threads=threads, grace=grace,
                    name=f"{framework}:{os.getpid()}")
    await worker.start()
    return worker


class NotATask(TypeError):
    """What was passed cannot run in a worker: it is not a function
    registered with ``@broker.task`` (or a ``functools.partial`` of one)."""


def _describe(func: Any) -> str:
    qn = getattr(func, "__qualname__", None) or type(func).__name__
    if "<lambda>" in qn:
        return "a lambda"
    if "<locals>" in qn:
        return f"the nested function (closure) {qn}"
    mod = getattr(func, "__module__", None)
    return f"{mod}:{qn}" if mod else repr(func)


def _not_a_task(func: Any, what: str) -> NotATask:
    return NotATask(
        f"{what}: {_describe(func)} is not a registered task, so a worker "
        "could not import and run it. Define it at module level, decorate "
        "it with @broker.task (from taskbroker: broker = Broker()), and "
        "pass its arguments separately: add_background_task(fn, *args, "
        "**kwargs) or functools.partial(fn, ...). Arguments must be plain "
        "data (str, int, float, bool, None, bytes, list, dict): pass an id "
        "or a path rather than a connection or an object")


def _lookup(fn: Any, brokers: tuple["Broker", ...]
            ) -> Optional[TaskFunction[Any, Any]]:
    """The TaskFunction whose undecorated function is fn, if any."""
    for b in brokers:
        for tf in b._registry.values():
            if tf.fn is fn:
                return tf
    return None


def resolve_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 brokers: tuple["Broker", ...] = (), *,
                 what: str = "add_background_task"
                 ) -> tuple[TaskFunction[Any, Any], dict[str, Any],
                            tuple[Any, ...], dict[str, Any]]:
    """(task function, its options, args, kwargs) for a call of func.

    func may be a :class:`TaskFunction`, ``fn.options(...)``, a
    ``functools.partial`` of either (its arguments come first, as a call
    would pass them), or the plain function registered on one of brokers.
    Anything else raises :class:`NotATask`."""
    while isinstance(func, functools.partial):
        args = tuple(func.args) + tuple(args)
        kwargs = {**func.keywords, **kwargs}
        func = func.func
    if isinstance(func, TaskOptions):
        return func.tf, dict(func.opts), args, kwargs
    if isinstance(func, TaskFunction):
        return func, dict(func.opts), args, kwargs
    tf = _lookup(func, brokers)
    if tf is not None:
        return tf, dict(tf.opts), args, kwargs
    raise _not_a_task(func, what)


def resolve_coroutine(coro: Any, brokers: tuple["Broker", ...], *,
                      what: str = "schedule"
                      ) -> tuple[TaskFunction[Any, Any], tuple[Any, ...],
                                 dict[str, Any]]:
    """(task function, args, kwargs) of a coroutine object that calling a
    registered async task made and nobody has started: ``schedule(
    send(7))`` as ASAB users write it. The arguments are read from the
    unstarted coroutine's frame; the coroutine is closed (it never runs
    here). Anything else raises :class:`NotATask`."""
    if not inspect.iscoroutine(coro):
        raise NotATask(f"{what}: expected a coroutine, got "
                       f"{type(coro).__name__}")
    code = getattr(coro, "cr_code", None)
    tf = None
    for b in brokers:
        for cand in b._registry.values():
            if getattr(cand.fn, "__code__", None) is code:
                tf = cand
                break
        if tf is not None:
            break
    if tf is None or inspect.getcoroutinestate(coro) != \
            inspect.CORO_CREATED:
        name = getattr(coro, "__qualname__", "?")
        coro.close()
        if tf is None:
            raise NotATask(
                f"{what}: the coroutine {name}() is not a registered task's, "
                "so a worker could not run it. Decorate the async function "
                "with @broker.task at module level (on the Broker this "
                "service uses) and schedule fn(*args), fn itself or "
                "functools.partial(fn, ...); arguments must be plain data")
        raise NotATask(f"{what}: the coroutine {name}() has already started")
    frame = coro.cr_frame
    assert frame is not None  # not started, so not finished
    loc = frame.f_locals
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    sig = tf.signature
    assert sig is not None
    varpos = any(p.kind is p.VAR_POSITIONAL
                 for p in sig.parameters.values())
    for p in sig.parameters.values():
        if p.name not in loc:
            continue
        v = loc[p.name]
        if p.kind is p.POSITIONAL_ONLY or (
                varpos and p.kind is p.POSITIONAL_OR_KEYWORD):
            args.append(v)
        elif p.kind is p.VAR_POSITIONAL:
            args.extend(v)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(v)
        else:
            kwargs[p.name] = v
    coro.close()
    return tf, tuple(args), kwargs
