"""The client: :class:`Broker` (blocking) and :class:`AsyncBroker` (asyncio).

A :class:`Broker` is cheap to create and makes no connection: the C client
(``tb_client``) is opened on first use, in the process that uses it. nng is
not fork-safe, so a Broker (or any taskbroker object) that was used in a
parent process raises :class:`ForkError` in a forked child instead of
touching nng; a Broker created but never used before the fork works in the
child. Once a process has used taskbroker, none of its forked children can
(nng aborts any use in such a child, also with a fresh socket): create the
Broker after forking (e.g. a post-fork hook of the server) or use the
'spawn' start method.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import datetime as _dt
import itertools
import os
import threading
import time
import weakref
from ctypes import byref, c_int, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING, Any, Callable, Iterable, Iterator,
    Optional, Sequence, Union,
)

import msgpack  # type: ignore[import-untyped]

from . import _lib
from ._lib import TB_EFORK, TB_ETIMEDOUT, TB_OK
from .errors import ForkError, TaskFailed, error_for_code

if TYPE_CHECKING:
    from .tasks import TaskFunction

__all__ = [
    "Broker", "AsyncBroker", "Task", "TaskSpec", "Event", "Stats",
    "Schedule", "QueueInfo", "WorkerInfo", "WorkerHandlerInfo",
    "Subscription", "AsyncSubscription",
    "STATES", "FINAL_STATES",
]

STATES = ("pending", "running", "done", "failed", "dead", "cancelled")
FINAL_STATES = frozenset({"done", "dead", "cancelled"})

Duration = Union[float, int, _dt.timedelta, None]
When = Union[float, int, _dt.datetime, None]

# The pid of the first process that used nng through this package; a
# forked child sees another pid and must not touch nng (see the module doc).
_nng_pid: Optional[int] = None
_nng_lock = threading.Lock()


def _check_fork(what: str) -> None:
    pid = os.getpid()
    if _nng_pid is not None and _nng_pid != pid:
        raise ForkError(
            f"{what}: this process (pid {pid}) was forked from pid "
            f"{_nng_pid}, which had already used taskbroker; nng is not "
            "fork-safe and aborts any use in such a child. Create the Broker "
            "only in the child (after the fork), or start children with "
            "the 'spawn' method (multiprocessing.get_context('spawn'))")


def _mark_nng_used() -> None:
    global _nng_pid
    with _nng_lock:
        if _nng_pid is None:
            _nng_pid = os.getpid()


def _seconds_ms(d: Duration, what: str, *, none: int = 0) -> int:
    """A duration in seconds (or a timedelta) as whole milliseconds."""
    if d is None:
        return none
    if isinstance(d, _dt.timedelta):
        d = d.total_seconds()
    if d < 0:
        raise ValueError(f"{what} must not be negative: {d!r}")
    return int(round(d * 1000))


def _unix_us(t: When) -> int:
    if t is None:
        return 0
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise ValueError("run_at must be an aware datetime (give tzinfo)")
        t = t.timestamp()
    return int(t * 1_000_000)


def _time(us: int) -> Optional[float]:
    return us / 1e6 if us else None


def pack(obj: Any) -> bytes:
    """Serialise obj with msgpack as the package does for payloads."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode msgpack bytes as the package does for results."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _decode_bytes(ptr: Optional[int], n: int) -> Any:
    if not ptr or n == 0:
        return None
    raw = ctypes.string_at(ptr, n)
    try:
        return unpack(raw)
    except Exception:  # not msgpack: hand over the bytes
        return raw


def _has_crashes() -> bool:
    """Whether the library reports crashes (older ones do not)."""
    return _lib.has("tb_task_crashes")


@dataclass(frozen=True)
class Task:
    """A task as the broker reports it.

    Times are Unix seconds (float) or ``None`` when not reached;
    ``result`` is the msgpack-decoded result (``None`` if none); ``error``
    the last attempt's error text, if it failed.
    """

    id: int
    state: str
    attempts: int
    max_attempts: int
    crashes: int
    max_crashes: int
    priority: int
    queue: str
    handler: str
    result: Any
    error: Optional[str]
    created_at: Optional[float]
    started_at: Optional[float]
    finished_at: Optional[float]
    run_at: Optional[float]
    timeout: Optional[float]
    forever: bool
    key: Optional[str]

    @property
    def ended(self) -> bool:
        """True for done, dead and cancelled."""
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        """True if the task is done."""
        return self.state == "done"

    @classmethod
    def _from_c(cls, t: int) -> "Task":
        L = _lib.lib()
        n = c_size_t(0)
        res = L.tb_task_result(t, byref(n))
        tmo = L.tb_task_timeout_ms(t)
        return cls(
            id=L.tb_task_id(t),
            state=_lib.s(L.tb_state_name(L.tb_task_state(t))) or "unknown",
            attempts=L.tb_task_attempts(t),
            max_attempts=L.tb_task_max_attempts(t),
            crashes=L.tb_task_crashes(t) if _has_crashes() else 0,
            max_crashes=L.tb_task_max_crashes(t) if _has_crashes() else 0,
            priority=L.tb_task_priority(t),
            queue=_lib.s(L.tb_task_queue(t)) or "",
            handler=_lib.s(L.tb_task_handler(t)) or "",
            result=_decode_bytes(res, n.value),
            error=_lib.s(L.tb_task_error(t)),
            created_at=_time(L.tb_task_created_at(t)),
            started_at=_time(L.tb_task_started_at(t)),
            finished_at=_time(L.tb_task_finished_at(t)),
            run_at=_time(L.tb_task_run_at(t)),
            timeout=tmo / 1000 if tmo else None,
            forever=bool(L.tb_task_forever(t)),
            key=_lib.s(L.tb_task_key(t)),
        )

    @classmethod
    def _take(cls, t: Optional[int]) -> Optional["Task"]:
        """Convert and free a tb_task (None for NULL)."""
        if not t:
            return None
        try:
            return cls._from_c(t)
        finally:
            _lib.lib().tb_task_free(t)


@dataclass(frozen=True)
class Event:
    """One event from the broker's PUB socket (see :meth:`Broker.events`).

    ``name`` is the event (``start``, ``done``, ``retry``, ``dead``,
    ``cancelled``, ``timeout``, ``interrupted``, ``restart``, ``crashloop``,
    ``fired``, ``shutdown``); ``state`` the task's state after it.
    """

    topic: str
    name: str
    seq: int
    task_id: int
    state: str
    attempt: int
    crashes: int
    duration: float
    time: Optional[float]
    queue: str
    handler: str
    result: Any
    error: Optional[str]

    @classmethod
    def _take(cls, e: int) -> "Event":
        L = _lib.lib()
        try:
            n = c_size_t(0)
            res = L.tb_event_result(e, byref(n))
            crashes = (L.tb_event_crashes(e)
                       if _lib.has("tb_event_crashes") else 0)
            return cls(
                topic=_lib.s(L.tb_event_topic(e)) or "",
                name=_lib.s(L.tb_event_name(e)) or "",
                seq=L.tb_event_seq(e),
                task_id=L.tb_event_task_id(e),
                state=_lib.s(L.tb_state_name(L.tb_event_state(e))) or "",
                attempt=L.tb_event_attempt(e),
                crashes=crashes,
                duration=L.tb_event_duration_us(e) / 1e6,
                time=_time(L.tb_event_time(e)),
                queue=_lib.s(L.tb_event_queue(e)) or "",
                handler=_lib.s(L.tb_event_handler(e)) or "",
                result=_decode_bytes(res, n.value),
                error=_lib.s(L.tb_event_error(e)),
            )
        finally:
            L.tb_event_free(e)


@dataclass(frozen=True)
class Stats:
    """Broker-wide figures (``tb_stats``); ``uptime`` in seconds."""

    pending: int
    running: int
    done: int
    failed: int
    dead: int
    cancelled: int
    submitted: int
    completed: int
    uptime: float
    workers: int
    pid: int
    schedules: int
    forever: int
    crashloop: int


@dataclass(frozen=True)
class Schedule:
    """A periodic schedule as the broker reports it."""

    name: str
    handler: str
    queue: str
    cron: Optional[str]
    every: Optional[float]
    priority: int
    max_attempts: int
    timeout: Optional[float]
    catch_up: bool
    paused: bool
    next_at: Optional[float]
    last_at: Optional[float]
    fired: int
    last_task: int


@dataclass(frozen=True)
class QueueInfo:
    """One queue's figures (``tb_queues``)."""

    name: str
    pending: int
    running: int
    failed: int
    dead: int
    done: int
    cancelled: int
    paused: bool
    concurrency: int
    max_pending: int
    done_last_min: int
    oldest_pending: float
    forever: int
    crashloop: int


@dataclass(frozen=True)
class WorkerInfo:
    """A worker connected to the broker (:meth:`Broker.workers`);
    ``since`` is the Unix time of its hello."""

    id: int
    pid: int
    host: str
    name: str
    handlers: tuple[str, ...]
    queues: tuple[str, ...]
    slots: int
    running: int
    done: int
    since: Optional[float]


@dataclass(frozen=True)
class WorkerHandlerInfo:
    """A worker handler's figures (:meth:`Broker.worker_handlers`)."""

    name: str
    workers: int
    waiting: int


@dataclass
class TaskSpec:
    """One task of :meth:`Broker.submit_batch` (the options of
    :meth:`Broker.submit`)."""

    handler: str
    payload: Any = None
    queue: Optional[str] = None
    priority: int = 0
    delay: Duration = None
    run_at: When = None
    max_attempts: Optional[int] = None
    timeout: Duration = None
    key: Optional[str] = None
    forever: bool = False
    max_crashes: Optional[int] = None
    payload_bytes: Optional[bytes] = None


class _Prepared:
    """A submit's C arguments, kept alive as long as the call needs them."""

    __slots__ = ("handler", "payload", "opts", "keep")

    def __init__(self, spec: TaskSpec) -> None:
        if not spec.handler:
            raise ValueError("handler must be a non-empty string")
        self.handler = spec.handler.encode()
        if spec.payload_bytes is not None:
            self.payload = bytes(spec.payload_bytes)
        elif spec.payload is None:
            self.payload = b""
        else:
            self.payload = pack(spec.payload)
        o = _lib.SubmitOpts()
        self.keep = []
        if spec.queue is not None:
            q = spec.queue.encode()
            self.keep.append(q)
            o.queue = q
        if spec.key is not None:
            k = spec.key.encode()
            self.keep.append(k)
            o.key = k
        o.priority = int(spec.priority)
        o.max_attempts = int(spec.max_attempts or 0)
        o.timeout_ms = _seconds_ms(spec.timeout, "timeout")
        o.delay_ms = _seconds_ms(spec.delay, "delay")
        o.run_at = _unix_us(spec.run_at)
        o.forever = 1 if spec.forever else 0
        o.max_crashes = int(spec.max_crashes or 0)
        self.opts = o

    def payload_ptr(self) -> Optional[bytes]:
        return self.payload if self.payload else None


def _spec(handler: Union[str, TaskSpec], payload: Any = None,
          **opts: Any) -> TaskSpec:
    if isinstance(handler, TaskSpec):
        return handler
    return TaskSpec(handler, payload, **opts)


class _Tracker:
    """Ids submitted inside a wait_all() block."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lock = threading.Lock()

    def add(self, ids: Iterable[int]) -> None:
        with self.lock:
            self.ids.extend(ids)


class Broker:
    """A connection to taskbrokerd (blocking calls; see :attr:`aio` for
    asyncio).

    ``url`` and ``events_url`` default as the CLI's do: ``$TASKBROKER_URL``
    / ``$TASKBROKER_EVENTS_URL``, else the broker's defaults
    (``ipc://run/taskbroker.sock``, relative to the working directory).
    The token and TLS settings come from the environment
    (``$TASKBROKER_TOKEN``, ``$TASKBROKER_TOKEN_FILE``,
    ``$TASKBROKER_TLS_*``) through the C library. ``timeout`` is how long a
    request waits for its reply, in seconds (``wait`` and ``drain`` add
    their own). ``eager=True`` makes :meth:`task` functions run in-process
    at defer time (for unit tests; see :mod:`taskbroker.testing`) and
    makes no connection for them.

    A Broker may be shared by many threads. It opens its connection on
    first use, per process (see the module doc on fork). Use it as a
    context manager or call :meth:`close`.
    """

    def __init__(self, url: Optional[str] = None, *,
                 events_url: Optional[str] = None,
                 timeout: float = 10.0, eager: bool = False,
                 io_threads: int = 4) -> None:
        self._url = url
        self._events_url = events_url
        self._timeout_ms = _seconds_ms(timeout, "timeout") or 1
        self.eager = eager
        self._io_threads = io_threads
        self._lock = threading.Lock()
        self._client: Optional[int] = None
        self._pid: Optional[int] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._aconns: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncConn]" = weakref.WeakKeyDictionary()  # noqa: E501
        self._trackers: list[_Tracker] = []
        self._registry: dict[str, "TaskFunction[Any, Any]"] = {}
        self._closed = False
        self._aio: Optional[AsyncBroker] = None

    # ---- set-up ----------------------------------------------------------

    @property
    def url(self) -> str:
        """The request endpoint in use."""
        if self._url:
            return self._url
        return _lib.s(_lib.lib().tb_default_url()) or ""

    @property
    def events_url(self) -> str:
        """The events endpoint in use."""
        if self._events_url:
            return self._events_url
        return _lib.s(_lib.lib().tb_default_events_url()) or ""

    @property
    def aio(self) -> "AsyncBroker":
        """The asyncio face of this Broker (same connection settings)."""
        if self._aio is None:
            self._aio = AsyncBroker(self)
        return self._aio

    def _new_client(self) -> int:
        L = _lib.lib()
        cp = c_void_p()
        rv = L.tb_client_open(byref(cp), _lib.enc(self._url))
        if rv != TB_OK:
            raise error_for_code(
                rv, f"open client for {self._url or 'the default url'}")
        L.tb_client_set_timeout(cp, self._timeout_ms)
        return cp.value  # type: ignore[return-value]

    def _c(self, what: str = "taskbroker") -> int:
        """The process's tb_client, opened on first use."""
        if self._closed:
            raise error_for_code(5, what)
        pid = os.getpid()
        c = self._client
        if c is not None and self._pid == pid:
            return c
        if c is not None:
            # A forked child: raise before taking the lock, which another
            # thread of the parent may have held at the fork.
            raise ForkError(
                f"{what}: this Broker was used in pid {self._pid} and "
                f"this is its forked child (pid {pid}); nng is not "
                "fork-safe. Create the Broker in the child instead, or "
                "start children with the 'spawn' method")
        with self._lock:
            if self._client is not None and self._pid != pid:
                raise ForkError(
                    f"{what}: this Broker was used in pid {self._pid} and "
                    f"this is its forked child (pid {pid}); nng is not "
                    "fork-safe. Create the Broker in the child instead, or "
                    "start children with the 'spawn' method")
            _check_fork(what)
            if self._client is None:
                self._client = self._new_client()
                self._pid = pid
                _mark_nng_used()
            return self._client

    def close(self) -> None:
        """Close the connection(s). In a forked child only memory is
        freed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            c, self._client = self._client, None
            conns = list(self._aconns.values())
            self._aconns.clear()
            pool, self._pool = self._pool, None
        for ac in conns:
            ac.close()
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=False, cancel_futures=True)
        if c is not None:
            _lib.lib().tb_client_close(c)

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and self._client is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Broker url={self._url or 'default'!s}>"

    def _check(self, rv: int, what: str) -> None:
        if rv != TB_OK:
            raise error_for_code(rv, what)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._io_threads,
                    thread_name_prefix="taskbroker-io")
            return self._pool

    # ---- submits ---------------------------------------------------------

    def submit(self, handler: Union[str, TaskSpec], payload: Any = None, *,
               queue: Optional[str] = None, priority: int = 0,
               delay: Duration = None, run_at: When = None,
               max_attempts: Optional[int] = None, timeout: Duration = None,
               key: Optional[str] = None, forever: bool = False,
               max_crashes: Optional[int] = None,
               payload_bytes: Optional[bytes] = None) -> int:
        """Submit one task; return its id once the broker has stored it.

        ``payload`` is serialised with msgpack (``payload_bytes`` gives
        msgpack bytes as they are); ``None`` is an empty map. ``delay`` and
        ``timeout`` are seconds (or timedeltas), ``run_at`` a Unix time or
        an aware datetime. ``key`` is an idempotency key: while a task with
        it has not ended, its id is returned instead. ``forever`` restarts
        the task whenever it ends. Raises a :class:`TaskbrokerError`
        subclass (``UnknownHandler``, ``ShuttingDown``, ``QueueFull``...).
        """
        p = _Prepared(_spec(handler, payload, queue=queue, priority=priority,
                            delay=delay, run_at=run_at,
                            max_attempts=max_attempts, timeout=timeout,
                            key=key, forever=forever,
                            max_crashes=max_crashes,
                            payload_bytes=payload_bytes))
        c = self._c("submit")
        tid = _lib.tb_id(0)
        rv = _lib.lib().tb_submit(c, p.handler, p.payload_ptr(),
                                  len(p.payload), byref(p.opts), byref(tid))
        self._check(rv, f"submit {p.handler.decode()}")
        self._track([tid.value])
        return tid.value

    def submit_batch(self, specs: Iterable[Union[TaskSpec, str]]) -> list[int]:
        """Submit up to 1000 tasks in one request and one commit; all or
        nothing. Returns their ids in order."""
        arr, keep = self._batch(specs)
        c = self._c("submit_batch")
        ids = (_lib.tb_id * len(arr))()
        rv = _lib.lib().tb_submit_batch(c, arr, len(arr), ids)
        self._check(rv, f"submit_batch of {len(arr)}")
        out = list(ids)
        self._track(out)
        return out

    @staticmethod
    def _batch(specs: Iterable[Union[TaskSpec, str]]) -> tuple[Any, list[Any]]:
        preps = [_Prepared(_spec(s)) for s in specs]
        if not preps:
            raise ValueError("submit_batch needs at least one task")
        arr = (_lib.TaskSpecC * len(preps))()
        for i, p in enumerate(preps):
            arr[i].handler = p.handler
            arr[i].payload = ctypes.cast(ctypes.c_char_p(p.payload),
                                         c_void_p) if p.payload else None
            arr[i].payload_len = len(p.payload)
            arr[i].opts = ctypes.pointer(p.opts)
        return arr, preps

    def _track(self, ids: Sequence[int]) -> None:
        if self._trackers:
            for t in list(self._trackers):
                t.add(ids)

    # ---- tasks -----------------------------------------------------------

    def status(self, task_id: int) -> Task:
        """The task's current state. ``NotFound`` if there is none."""
        c = self._c("status")
        tp = c_void_p()
        self._check(_lib.lib().tb_status(c, task_id, byref(tp)),
                    f"status {task_id}")
        return Task._take(tp.value)  # type: ignore[return-value]

    def wait(self, task_id: int, timeout: Duration = None) -> Task:
        """Wait until the task has ended (``timeout`` seconds; ``None``: the
        broker's maximum, an hour) and return it. Raises ``TimedOut`` (with
        ``.task``, the task as it was) if it had not ended in time."""
        c = self._c("wait")
        tp = c_void_p()
        ms = -1 if timeout is None else _seconds_ms(timeout, "timeout")
        rv = _lib.lib().tb_wait(c, task_id, ms, byref(tp))
        task = Task._take(tp.value)
        if rv != TB_OK:
            raise error_for_code(rv, f"wait {task_id}", task)
        return task  # type: ignore[return-value]

    def result(self, task_id: int, timeout: Duration = None) -> Any:
        """Wait for the task and return its (decoded) result; raise
        ``TaskFailed`` / ``TaskCancelled`` if it ended otherwise."""
        return _result_of(self.wait(task_id, timeout))

    def cancel(self, task_id: int) -> Task:
        """Cancel a task that has not ended; return it after the change.
        ``WrongState`` if it had ended."""
        c = self._c("cancel")
        tp = c_void_p()
        self._check(_lib.lib().tb_cancel(c, task_id, byref(tp)),
                    f"cancel {task_id}")
        return Task._take(tp.value)  # type: ignore[return-value]

    def retry(self, task_id: int) -> None:
        """Put a dead or cancelled task back to pending (attempts and
        crashes reset). ``WrongState`` otherwise."""
        self._check(_lib.lib().tb_retry(self._c("retry"), task_id),
                    f"retry {task_id}")

    def retry_queue(self, queue: Optional[str] = None,
                    state: str = "dead") -> int:
        """Retry every task of queue (``None``: all) in state ``dead`` or
        ``cancelled``; return how many."""
        n = c_uint64(0)
        rv = _lib.lib().tb_retry_queue(self._c("retry"), _lib.enc(queue),
                                       _state(state), byref(n))
        self._check(rv, "retry_queue")
        return n.value

    def list_tasks(self, *, queue: Optional[str] = None,
                   state: Optional[str] = None, limit: int = 100,
                   after: int = 0, handler: Optional[str] = None,
                   older_than: Duration = None,
                   newer_than: Duration = None) -> list[Task]:
        """Up to ``limit`` (at most 1000) tasks in id order, filtered;
        page with ``after`` (the last id seen). Also :meth:`list`."""
        o = _lib.ListOpts()
        q, h = _lib.enc(queue), _lib.enc(handler)
        o.queue, o.handler = q, h
        o.state = -1 if state is None else _state(state)
        o.limit = limit
        o.after_id = after
        o.min_age_ms = _seconds_ms(older_than, "older_than")
        o.max_age_ms = _seconds_ms(newer_than, "newer_than")
        arr = ctypes.POINTER(c_void_p)()
        n = c_size_t(0)
        L = _lib.lib()
        self._check(L.tb_list(self._c("list"), byref(o), byref(arr),
                              byref(n)), "list")
        try:
            return [Task._from_c(arr[i]) for i in range(n.value)]
        finally:
            L.tb_task_list_free(arr, n.value)

    # ---- broker and queues -----------------------------------------------

    def stats(self) -> Stats:
        """Broker-wide figures."""
        st = _lib.StatsC()
        self._check(_lib.lib().tb_stats_get(self._c("stats"), byref(st)),
                    "stats")
        return Stats(st.pending, st.running, st.done, st.failed, st.dead,
                     st.cancelled, st.submitted, st.completed,
                     st.uptime_ms / 1000, st.workers, st.pid, st.schedules,
                     st.forever, st.crashloop)

    def ping(self) -> str:
        """Check that the broker answers; return its version."""
        v = c_void_p()
        self._check(_lib.lib().tb_ping(self._c("ping"), byref(v)), "ping")
        try:
            return ctypes.string_at(v.value).decode() if v.value else ""
        finally:
            if v.value:
                _lib.free(v.value)

    def shutdown(self) -> None:
        """Ask the broker to shut down gracefully (returns once asked)."""
        self._check(_lib.lib().tb_shutdown(self._c("shutdown")), "shutdown")

    def pause(self, queue: str) -> None:
        """Stop queue from starting tasks (it still accepts them)."""
        self._check(_lib.lib().tb_pause(self._c("pause"), _lib.enc(queue)),
                    f"pause {queue}")

    def resume(self, queue: str) -> None:
        """Let a paused queue start tasks again."""
        self._check(_lib.lib().tb_resume(self._c("resume"), _lib.enc(queue)),
                    f"resume {queue}")

    def drain(self, queue: Optional[str] = None,
              timeout: Duration = None) -> None:
        """Wait until queue (``None``: all) has nothing pending, waiting for
        a retry or running; ``TimedOut`` if not within ``timeout``."""
        ms = -1 if timeout is None else _seconds_ms(timeout, "timeout")
        self._check(_lib.lib().tb_drain(self._c("drain"), _lib.enc(queue),
                                        ms), f"drain {queue or 'all'}")

    def purge(self, *, state: str, queue: Optional[str] = None,
              older_than: Duration = None) -> int:
        """Delete tasks in ``state`` (pending, done, dead or cancelled) of
        queue (``None``: all) created at least ``older_than`` seconds ago;
        return how many."""
        n = c_uint64(0)
        rv = _lib.lib().tb_purge(self._c("purge"), _lib.enc(queue),
                                 _state(state),
                                 _seconds_ms(older_than, "older_than"),
                                 byref(n))
        self._check(rv, "purge")
        return n.value

    def queues(self) -> list[QueueInfo]:
        """Every known queue with its figures."""
        arr = ctypes.POINTER(_lib.QueueInfoC)()
        n = c_size_t(0)
        L = _lib.lib()
        self._check(L.tb_queues(self._c("queues"), byref(arr), byref(n)),
                    "queues")
        try:
            return [QueueInfo(_lib.s(q.name) or "", q.pending, q.running,
                              q.failed, q.dead, q.done, q.cancelled,
                              bool(q.paused), q.concurrency, q.max_pending,
                              q.done_last_min, q.oldest_pending_ms / 1000,
                              q.forever, q.crashloop)
                    for q in (arr[i] for i in range(n.value))]
        finally:
            L.tb_queues_free(arr, n.value)

    # ---- workers ---------------------------------------------------------

    def _need(self, name: str) -> None:
        if not _lib.has(name):
            raise NotImplementedError(
                f"{_lib.path()} has no {name}: a library with workers is "
                "needed")

    def workers(self) -> list[WorkerInfo]:
        """The workers connected to the broker."""
        self._need("tb_workers")
        arr = ctypes.POINTER(_lib.WorkerInfoC)()
        n = c_size_t(0)
        L = _lib.lib()
        self._check(L.tb_workers(self._c("workers"), byref(arr), byref(n)),
                    "workers")

        def split(b: Optional[bytes]) -> tuple[str, ...]:
            return tuple(x for x in (_lib.s(b) or "").split(",") if x)

        try:
            return [WorkerInfo(w.id, w.pid, _lib.s(w.host) or "",
                               _lib.s(w.name) or "", split(w.handlers),
                               split(w.queues), w.slots, w.running, w.done,
                               _time(w.since))
                    for w in (arr[i] for i in range(n.value))]
        finally:
            L.tb_workers_free(arr, n.value)

    def worker_handlers(self) -> list[WorkerHandlerInfo]:
        """The handler names the broker knows as worker handlers."""
        self._need("tb_worker_handlers")
        arr = ctypes.POINTER(_lib.WHandlerInfoC)()
        n = c_size_t(0)
        L = _lib.lib()
        self._check(L.tb_worker_handlers(self._c("worker_handlers"),
                                         byref(arr), byref(n)),
                    "worker_handlers")
        try:
            return [WorkerHandlerInfo(_lib.s(h.name) or "", h.workers,
                                      h.waiting)
                    for h in (arr[i] for i in range(n.value))]
        finally:
            L.tb_worker_handlers_free(arr, n.value)

    # ---- schedules -------------------------------------------------------

    def schedule_add(self, name: str, handler: str, payload: Any = None, *,
                     every: Duration = None, cron: Optional[str] = None,
                     queue: Optional[str] = None, priority: int = 0,
                     max_attempts: Optional[int] = None,
                     timeout: Duration = None,
                     catch_up: bool = False) -> None:
        """Add (or replace) the periodic schedule ``name``: exactly one of
        ``every`` (seconds) and ``cron`` (5 fields or ``@daily``..., UTC)."""
        if (every is None) == (cron is None):
            raise ValueError("give exactly one of every= and cron=")
        sp = _lib.ScheduleSpec()
        keep = [name.encode(), handler.encode(), _lib.enc(queue),
                _lib.enc(cron)]
        data = b"" if payload is None else pack(payload)
        sp.name, sp.handler, sp.queue, sp.cron = keep
        if data:
            sp.payload = ctypes.cast(ctypes.c_char_p(data), c_void_p)
        sp.payload_len = len(data)
        sp.priority = priority
        sp.max_attempts = max_attempts or 0
        sp.timeout_ms = _seconds_ms(timeout, "timeout")
        sp.every_ms = _seconds_ms(every, "every")
        sp.catch_up = 1 if catch_up else 0
        self._check(_lib.lib().tb_schedule_add(self._c("schedule_add"),
                                               byref(sp)),
                    f"schedule_add {name}")

    def schedule_rm(self, name: str) -> None:
        """Remove a schedule; ``NotFound`` if there is none."""
        self._check(_lib.lib().tb_schedule_rm(self._c("schedule_rm"),
                                              name.encode()),
                    f"schedule_rm {name}")

    def schedule_pause(self, name: str, paused: bool = True) -> None:
        """Pause (or, with ``paused=False``, resume) a schedule."""
        self._check(_lib.lib().tb_schedule_pause(self._c("schedule_pause"),
                                                 name.encode(), int(paused)),
                    f"schedule_pause {name}")

    def schedule_resume(self, name: str) -> None:
        """Resume a paused schedule."""
        self.schedule_pause(name, False)

    def schedules(self) -> list[Schedule]:
        """Every schedule."""
        arr = ctypes.POINTER(_lib.ScheduleInfoC)()
        n = c_size_t(0)
        L = _lib.lib()
        self._check(L.tb_schedule_list(self._c("schedules"), byref(arr),
                                       byref(n)), "schedules")
        try:
            out = []
            for i in range(n.value):
                x = arr[i]
                out.append(Schedule(
                    _lib.s(x.name) or "", _lib.s(x.handler) or "",
                    _lib.s(x.queue) or "", _lib.s(x.cron),
                    x.every_ms / 1000 if x.every_ms else None, x.priority,
                    x.max_attempts,
                    x.timeout_ms / 1000 if x.timeout_ms else None,
                    bool(x.catch_up), bool(x.paused), _time(x.next_at),
                    _time(x.last_at), x.fired, x.last_task))
            return out
        finally:
            L.tb_schedule_list_free(arr, n.value)

    # ---- events ----------------------------------------------------------

    def events(self, prefix: str = "") -> "Subscription":
        """Subscribe to events whose topic (``tb.<event>.<queue>.<handler>``)
        starts with prefix; iterate the result (a context manager).
        Events are best effort: a slow subscriber may miss some, and the
        subscription connects in the background, so events published
        right after this call may be missed."""
        _check_fork("events")
        return Subscription(self.events_url, prefix)

    # ---- tasks registry --------------------------------------------------

    def task(self, fn: Optional[Callable[..., Any]] = None, *,
             name: Optional[str] = None, queue: Optional[str] = None,
             priority: int = 0, max_attempts: Optional[int] = None,
             timeout: Duration = None, key: Optional[str] = None,
             max_crashes: Optional[int] = None) -> Any:
        """Register a function as a task (decorator, with or without
        arguments). The handler name is ``module:qualname`` unless ``name``
        is given. Returns a :class:`~taskbroker.tasks.TaskFunction`: call it
        to run in-process, ``.defer(...)`` to submit."""
        from .tasks import TaskFunction

        def deco(f: Callable[..., Any]) -> "TaskFunction[Any, Any]":
            tf = TaskFunction(self, f, name=name, queue=queue,
                              priority=priority, max_attempts=max_attempts,
                              timeout=timeout, key=key,
                              max_crashes=max_crashes)
            if tf.name in self._registry and \
                    self._registry[tf.name].fn is not f:
                raise ValueError(f"a task named {tf.name!r} is already "
                                 "registered on this Broker")
            self._registry[tf.name] = tf
            return tf

        return deco(fn) if fn is not None else deco

    @property
    def registry(self) -> dict[str, "TaskFunction[Any, Any]"]:
        """The tasks registered with :meth:`task`, by handler name."""
        return dict(self._registry)

    # ---- wait_all --------------------------------------------------------

    @contextlib.contextmanager
    def _tracking(self) -> Iterator[_Tracker]:
        t = _Tracker()
        self._trackers.append(t)
        try:
            yield t
        finally:
            self._trackers.remove(t)

    def wait_all(self, timeout: Duration = 60.0) -> "_WaitAll":
        """``with broker.wait_all():`` (or ``async with``) waits, at the end
        of the block, for every task submitted through this Broker inside
        it (from any thread) to end; raises ``TaskFailed`` for the first
        that did not end ``done`` (its ``.failures`` lists them all) and
        ``TimedOut`` if they had not all ended within ``timeout``."""
        return _WaitAll(self, timeout)

    list = list_tasks  # the CLI's name ('ls'); after every annotation


def _state(name: str) -> int:
    try:
        return STATES.index(name)
    except ValueError:
        raise ValueError(f"unknown state {name!r}; one of {STATES}") from None


def _result_of(task: Task) -> Any:
    from .errors import TaskCancelled

    if task.state == "done":
        return task.result
    if task.state == "cancelled":
        raise TaskCancelled(task)
    raise TaskFailed(task)


def _check_all(tasks: Sequence[Task]) -> None:
    bad = [t for t in tasks if t.state != "done"]
    if bad:
        err = TaskFailed(bad[0], f"{len(bad)} of {len(tasks)} tasks did not "
                         f"end done; first: task {bad[0].id} "
                         f"({bad[0].handler}) {bad[0].state}"
                         + (f": {bad[0].error}" if bad[0].error else ""))
        err.failures = bad  # type: ignore[attr-defined]
        raise err


class _WaitAll:
    def __init__(self, broker: Broker, timeout: Duration) -> None:
        self.broker = broker
        self.timeout = timeout
        self._cm: Optional[contextlib.AbstractContextManager[_Tracker]] = None
        self.tracker: Optional[_Tracker] = None
        self.tasks: list[Task] = []

    def _enter(self) -> "_WaitAll":
        self._cm = self.broker._tracking()
        self.tracker = self._cm.__enter__()
        return self

    def _ids(self) -> list[int]:
        assert self._cm is not None and self.tracker is not None
        self._cm.__exit__(None, None, None)
        with self.tracker.lock:
            return list(dict.fromkeys(self.tracker.ids))

    def __enter__(self) -> "_WaitAll":
        return self._enter()

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        ids = self._ids()
        if et is not None:
            return
        deadline = time.monotonic() + (_seconds_ms(self.timeout, "t") / 1000
                                       if self.timeout is not None else 3600)
        self.tasks = [
            self.broker.wait(i, max(0.0, deadline - time.monotonic()))
            for i in ids]
        _check_all(self.tasks)

    async def __aenter__(self) -> "_WaitAll":
        return self._enter()

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        ids = self._ids()
        if et is not None:
            return
        t = None if self.timeout is None else \
            _seconds_ms(self.timeout, "t") / 1000
        a = self.broker.aio
        self.tasks = list(await asyncio.gather(*(a.wait(i, t) for i in ids)))
        _check_all(self.tasks)


# ---- events ---------------------------------------------------------------

class Subscription:
    """A subscription to the broker's events: iterate it (blocking) or call
    :meth:`recv`. Used by one thread at a time; close it (or use ``with``)."""

    _SLICE_MS = 250  # so that Ctrl-C gets through a blocking iteration

    def __init__(self, url: str, prefix: str = "") -> None:
        _check_fork("events")
        L = _lib.lib()
        sp = c_void_p()
        rv = L.tb_sub_open(byref(sp), url.encode(), prefix.encode())
        if rv != TB_OK:
            raise error_for_code(rv, f"subscribe to {url}")
        _mark_nng_used()
        self._s: Optional[int] = sp.value
        self._pid = os.getpid()
        self.url, self.prefix = url, prefix

    def recv(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or ``None`` if none came within ``timeout``
        seconds (``None``: wait for ever)."""
        if self._s is None:
            raise error_for_code(5, "events")
        if self._pid != os.getpid():
            raise error_for_code(TB_EFORK, "events")
        L = _lib.lib()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ms = self._SLICE_MS
            if deadline is not None:
                ms = max(0, min(ms, int((deadline - time.monotonic()) * 1000)))
            ep = c_void_p()
            rv = L.tb_sub_recv(self._s, ms, byref(ep))
            if rv == TB_OK:
                return Event._take(ep.value)  # type: ignore[arg-type]
            if rv != TB_ETIMEDOUT:
                raise error_for_code(rv, "events")
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._s is None:
            raise StopIteration
        ev = self.recv()
        assert ev is not None
        return ev

    def close(self) -> None:
        """Close the subscription (idempotent)."""
        s, self._s = self._s, None
        if s is not None:
            _lib.lib().tb_sub_close(s)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class AsyncSubscription:
    """Events as an async iterator: ``async for ev in sub``. A private
    thread (``taskbroker-events``) receives them and hands them to the
    event loop. Close it with ``aclose()`` or ``async with``."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self._sub = Subscription(url, prefix)
        self._loop = asyncio.get_running_loop()
        self._q: asyncio.Queue[Union[Event, BaseException, None]] = \
            asyncio.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="taskbroker-events")
        self._thread.start()

    def _put(self, item: Union[Event, BaseException, None]) -> None:
        if self._q.full() and isinstance(item, Event):
            return  # best effort, as the broker's PUB is
        self._q.put_nowait(item)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ev = self._sub.recv(0.25)
                if ev is not None:
                    self._loop.call_soon_threadsafe(self._put, ev)
        except BaseException as e:  # report it in the iterator
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._put, e)
        finally:
            self._sub.close()

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Event:
        item = await self._q.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def recv(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or ``None`` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            return None

    async def aclose(self) -> None:
        """Stop the receiving thread and close the subscription."""
        self._stop.set()
        await asyncio.get_running_loop().run_in_executor(
            _closer(), self._thread.join)
        self._q.put_nowait(None)

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


_closer_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _closer() -> concurrent.futures.ThreadPoolExecutor:
    """A one-thread pool for joins at close (never the loop's default)."""
    global _closer_pool
    if _closer_pool is None:
        _closer_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="taskbroker-close")
    return _closer_pool


# ---- asyncio ---------------------------------------------------------------

class _AsyncConn:
    """One tb_client per (Broker, event loop) for the C async API: its
    completion descriptor is watched with loop.add_reader, so no thread
    waits for a submit or a wait."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.client: Optional[int] = None
        self.pid = os.getpid()
        self.fd = -1
        self.pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self.tokens = itertools.count(1)
        self.slots = asyncio.Semaphore(1000)  # under TB_ASYNC_MAX_INFLIGHT

    def _drain(self) -> None:
        L = _lib.lib()
        while self.client is not None:
            op = c_void_p()
            rv = L.tb_client_next_completed(self.client, byref(op))
            if rv != TB_OK:
                break
            try:
                token = L.tb_op_arg(op) or 0
                fut, kind = self.pending.pop(token, (None, ""))
                st = L.tb_op_status(op)
                if kind == "submit":
                    val: Any = L.tb_op_id(op)
                elif kind == "batch":
                    n = c_size_t(0)
                    p = L.tb_op_ids(op, byref(n))
                    val = [p[i] for i in range(n.value)] if p else []
                else:
                    val = Task._take(L.tb_op_take_task(op))
            finally:
                L.tb_op_free(op)
            self.slots.release()
            if fut is None or fut.done():
                continue
            if st == TB_OK:
                fut.set_result(val)
            else:
                fut.set_exception(error_for_code(
                    st, kind, val if isinstance(val, Task) else None))

    async def start(self, kind: str,
                    call: Callable[[int, c_void_p], int]) -> Any:
        await self.slots.acquire()
        token = next(self.tokens)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending[token] = (fut, kind)
        if self.client is None:
            rv = 5
        else:
            rv = call(self.client, c_void_p(token))
        if rv != TB_OK:
            del self.pending[token]
            self.slots.release()
            raise error_for_code(rv, kind)
        return await fut

    def close(self) -> None:
        c, self.client = self.client, None
        if c is None:
            return
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.fd)
        for fut, kind in self.pending.values():
            if not fut.done():
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(
                        _set_exc, fut, error_for_code(5, kind))
        self.pending.clear()
        _lib.lib().tb_client_close(c)


def _set_exc(fut: asyncio.Future[Any], e: BaseException) -> None:
    if not fut.done():
        fut.set_exception(e)


class AsyncBroker:
    """The asyncio form of :class:`Broker`: the same methods, as
    coroutines, none of which blocks the event loop.

    ``submit``, ``submit_batch``, ``wait`` and ``result`` go through the C
    library's asynchronous API: requests in flight on one connection per
    event loop, completions read when its descriptor is readable
    (``loop.add_reader``), so hundreds can be in flight from one task
    without a thread each. Every other call runs on the Broker's private
    pool of ``io_threads`` threads named ``taskbroker-io-*`` (never the
    loop's default executor).

    ``AsyncBroker(url, ...)`` takes the arguments of :class:`Broker`, or
    wraps one: ``AsyncBroker(broker)`` and ``broker.aio`` share its
    settings, registry and pool.
    """

    def __init__(self, broker: Union[Broker, str, None] = None,
                 **kwargs: Any) -> None:
        if isinstance(broker, Broker):
            self.sync = broker
        else:
            self.sync = Broker(broker, **kwargs)
            self.sync._aio = self

    def __getattr__(self, name: str) -> Any:
        # task(), registry, url, wait_all, eager... are the Broker's.
        return getattr(self.sync, name)

    async def _conn(self) -> _AsyncConn:
        b = self.sync
        loop = asyncio.get_running_loop()
        ac = b._aconns.get(loop)
        if ac is not None and ac.pid == os.getpid():
            return ac
        b._c("asyncio")  # fork checks; marks nng as used
        for old_loop, old in list(b._aconns.items()):
            if old_loop.is_closed():  # its loop is gone: free the client
                del b._aconns[old_loop]
                old.close()
        lock = _open_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            ac = b._aconns.get(loop)
            if ac is not None and ac.pid == os.getpid():
                return ac
            ac = _AsyncConn(loop)
            # The first request of a client dials synchronously (up to
            # 250 ms when the broker is not there): on the pool, not here.
            await self._call(lambda: _open_aconn(b, ac))
            b._aconns[loop] = ac
            loop.add_reader(ac.fd, ac._drain)
        _open_locks.pop(loop, None)
        return ac

    async def _call(self, fn: Callable[[], Any]) -> Any:
        b = self.sync
        _check_fork("asyncio")
        return await asyncio.get_running_loop().run_in_executor(
            b._executor(), fn)

    async def submit(self, handler: Union[str, TaskSpec], payload: Any = None,
                     **opts: Any) -> int:
        """:meth:`Broker.submit`, without blocking the loop."""
        p = _Prepared(_spec(handler, payload, **opts))
        ac = await self._conn()
        L = _lib.lib()
        tid: int = await ac.start("submit", lambda c, tok: L.tb_submit_async(
            c, p.handler, p.payload_ptr(), len(p.payload), byref(p.opts),
            None, tok, None))
        self.sync._track([tid])
        return tid

    async def submit_batch(self, specs: Iterable[Union[TaskSpec, str]]
                           ) -> list[int]:
        """:meth:`Broker.submit_batch`, without blocking the loop."""
        arr, keep = Broker._batch(specs)
        ac = await self._conn()
        L = _lib.lib()
        ids: list[int] = await ac.start(
            "batch", lambda c, tok: L.tb_submit_batch_async(
                c, arr, len(arr), None, tok, None))
        self.sync._track(ids)
        return ids

    async def wait(self, task_id: int, timeout: Duration = None) -> Task:
        """:meth:`Broker.wait`, without blocking the loop."""
        ms = -1 if timeout is None else _seconds_ms(timeout, "timeout")
        ac = await self._conn()
        L = _lib.lib()
        task: Task = await ac.start("wait", lambda c, tok: L.tb_wait_async(
            c, task_id, ms, None, tok, None))
        return task

    async def result(self, task_id: int, timeout: Duration = None) -> Any:
        """:meth:`Broker.result`, without blocking the loop."""
        return _result_of(await self.wait(task_id, timeout))

    def events(self, prefix: str = "") -> AsyncSubscription:
        """Events as an async iterator (see :class:`AsyncSubscription`);
        call from a running loop."""
        _check_fork("events")
        return AsyncSubscription(self.sync.events_url, prefix)

    async def close(self) -> None:
        """Close the Broker's connections."""
        self.sync.close()

    async def __aenter__(self) -> "AsyncBroker":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


_open_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()  # noqa: E501


def _open_aconn(b: Broker, ac: _AsyncConn) -> None:
    """Open ac's client on a pool thread: open, dial (ping), its fd."""
    L = _lib.lib()
    c = b._new_client()
    v = c_void_p()
    rv = L.tb_ping(c, byref(v))
    if v.value:
        _lib.free(v.value)
    fd = c_int(-1)
    if rv == TB_OK:
        rv = L.tb_client_completion_fd(c, byref(fd))
    if rv != TB_OK:
        L.tb_client_close(c)
        raise error_for_code(rv, "asyncio connection")
    ac.client, ac.fd = c, fd.value


def _blocking(name: str) -> Callable[..., Any]:
    def method(self: AsyncBroker, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.sync, name)
        return self._call(lambda: fn(*args, **kwargs))

    method.__name__ = name
    method.__qualname__ = f"AsyncBroker.{name}"
    method.__doc__ = (f"Coroutine: :meth:`Broker.{name}` on the private "
                      "thread pool.")
    return method


for _name in ("status", "cancel", "retry", "retry_queue", "list_tasks",
              "stats", "ping", "shutdown", "pause", "resume", "drain",
              "purge", "queues", "schedule_add", "schedule_rm",
              "schedule_pause", "schedule_resume", "schedules", "workers",
              "worker_handlers"):
    setattr(AsyncBroker, _name, _blocking(_name))
AsyncBroker.list = AsyncBroker.list_tasks  # type: ignore[attr-defined]
del _name
