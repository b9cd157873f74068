"""The worker runtime: ``python3 -m taskbroker worker MODULE[:ATTR]``.

It imports MODULE, takes the :class:`~taskbroker.Broker` named ATTR (or
the module's only Broker) and serves every task registered on it with
``@broker.task``, through libtaskbroker's worker API (``tb_worker_*``):

- ``async def`` tasks run on the worker's asyncio event loop, which waits
  on the worker's descriptor (``tb_worker_fd``) with ``add_reader``: no
  thread per slot and no poll interval;
- plain ``def`` tasks run on a pool of ``--threads`` threads;
- at most ``--concurrency`` tasks run at once (the worker's slots);
- a task's return value is its result (msgpack); an exception becomes the
  task's error with its traceback (and a log line); raising
  :class:`~taskbroker.Reject` (``NoRetry``) ends the task without a
  retry;
- a cancel or a timeout reaches an async task as ``CancelledError`` and a
  sync task as ``taskbroker.current_task().cancelled``;
- SIGTERM or SIGINT stops taking tasks, lets the running ones finish
  within ``--grace`` seconds and hands the rest back to the broker (they
  run again, the attempt refunded); a second SIGINT stops at once (the
  broker then counts the running attempts as interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import sys
import traceback
from ctypes import byref, c_char_p, c_int, c_size_t, c_void_p
from typing import Any, Optional

from . import _lib
from ._lib import TB_ETIMEDOUT, TB_OK
from .client import AsyncBroker, Broker, _check_fork, _mark_nng_used, pack
from .errors import error_for_code
from .tasks import Reject, TaskContext, TaskFunction, _current, decode_call

__all__ = ["Worker", "run_worker", "load_broker"]

log = logging.getLogger("taskbroker.worker")

TB_ESTALE = 23
TB_ECLOSED = 5


def load_broker(target: str) -> Broker:
    """The Broker that ``MODULE[:ATTR]`` names (ATTR may also name an
    AsyncBroker, or an object with a ``broker`` attribute)."""
    mod_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    mod = importlib.import_module(mod_name)
    if attr:
        obj: Any = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, AsyncBroker):
            obj = obj.sync
        if not isinstance(obj, Broker) and isinstance(
                getattr(obj, "broker", None), Broker):
            obj = obj.broker
        if not isinstance(obj, Broker):
            raise TypeError(f"{target} is a {type(obj).__name__}, "
                            "not a taskbroker.Broker")
        return obj
    found = [v for v in vars(mod).values() if isinstance(v, Broker)]
    found += [v.sync for v in vars(mod).values()
              if isinstance(v, AsyncBroker) and v.sync not in found]
    if len(found) != 1:
        raise LookupError(
            f"module {mod_name} has {len(found)} Broker objects; name one: "
            f"{mod_name}:ATTR")
    return found[0]


class _Job:
    __slots__ = ("j", "tf", "ctx", "task", "future", "ended")

    def __init__(self, j: int, tf: Optional[TaskFunction[Any, Any]],
                 ctx: TaskContext) -> None:
        self.j = j
        self.tf = tf
        self.ctx = ctx
        self.task: Optional[asyncio.Task[Any]] = None
        self.future: Optional[asyncio.Future[Any]] = None
        self.ended = False


class Worker:
    """Serves a Broker's registered tasks (see the module doc)."""

    def __init__(self, broker: Broker, *, queues: tuple[str, ...] = (),
                 concurrency: int = 16, threads: int = 4,
                 grace: float = 30.0, name: Optional[str] = None,
                 url: Optional[str] = None) -> None:
        if not broker.registry:
            raise LookupError("no task is registered on this Broker "
                              "(@broker.task)")
        self.broker = broker
        self.tasks = broker.registry
        self.queues = queues
        self.concurrency = concurrency
        self.threads = threads
        self.grace = grace
        self.name = name or f"python:{os.getpid()}"
        self.url = url if url is not None else broker._url
        self.w: Optional[int] = None
        self.jobs: dict[int, _Job] = {}
        self.stopping = False
        self.sigints = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="taskbroker-task")
        # Results and failures are sent from here, never from the loop.
        self.done_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(32, max(2, concurrency)),
            thread_name_prefix="taskbroker-done")
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.stopped: Optional[asyncio.Event] = None
        self.embedded = False
        self._started: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task[int]] = None

    def open(self) -> None:
        if not _lib.has("tb_worker_open"):
            raise RuntimeError(
                f"{_lib.path()} has no worker API (tb_worker_open): build "
                "libtaskbroker from a version with workers")
        _check_fork("worker")
        L = _lib.lib()
        names = [n.encode() for n in self.tasks]
        qs = [q.encode() for q in self.queues]
        harr = (c_char_p * len(names))(*names)
        qarr = (c_char_p * max(1, len(qs)))(*qs)
        o = _lib.WorkerOpts()
        o.handlers = ctypes.cast(harr, ctypes.POINTER(c_char_p))
        o.nhandlers = len(names)
        if qs:
            o.queues = ctypes.cast(qarr, ctypes.POINTER(c_char_p))
            o.nqueues = len(qs)
        o.slots = self.concurrency
        nm = self.name.encode()
        o.name = nm
        wp = c_void_p()
        rv = L.tb_worker_open(byref(wp), _lib.enc(self.url), byref(o))
        if rv != TB_OK:
            raise error_for_code(rv, "worker open")
        _mark_nng_used()
        self.w = wp.value

    # ---- the loop side ---------------------------------------------------

    def _ready(self) -> None:
        """The worker's descriptor is readable: take jobs, see cancels."""
        L = _lib.lib()
        while self.w is not None and not self.stopping:
            jp = c_void_p()
            rv = L.tb_worker_try_next(self.w, byref(jp))
            if rv == TB_ETIMEDOUT:
                break
            if rv != TB_OK:
                log.error("worker: %s", error_for_code(rv, "take a job"))
                break
            self._start(jp.value)  # type: ignore[arg-type]
        self._check_cancels()

    def _check_cancels(self) -> None:
        L = _lib.lib()
        for job in list(self.jobs.values()):
            if not job.ended and not job.ctx.cancelled and \
                    L.tb_job_cancelled(job.j):
                self._cancel(job)

    def _cancel(self, job: _Job) -> None:
        job.ctx._cancel.set()
        if job.task is not None:
            job.task.cancel()

    def _start(self, j: int) -> None:
        L = _lib.lib()
        handler = _lib.s(L.tb_job_handler(j)) or ""
        n = c_size_t(0)
        p = L.tb_job_payload(j, byref(n))
        payload = ctypes.string_at(p, n.value) if p and n.value else b""
        dl = L.tb_job_deadline(j)
        ctx = TaskContext(id=L.tb_job_id(j), attempt=L.tb_job_attempt(j),
                          handler=handler, queue=_lib.s(L.tb_job_queue(j))
                          or "", deadline=dl / 1000 if dl else None)
        tf = self.tasks.get(handler)
        job = _Job(j, tf, ctx)
        self.jobs[j] = job
        if tf is None:
            self._end(job, False, f"this worker has no task {handler!r}",
                      False)
            return
        try:
            args, kwargs = decode_call(payload)
        except Exception as e:
            self._end(job, False, f"bad payload for {handler}: {e}", False)
            return
        assert self.loop is not None
        if tf.is_async:
            job.task = self.loop.create_task(self._run_async(job, args,
                                                             kwargs))
        else:
            job.future = self.loop.run_in_executor(
                self.pool, self._run_sync, job, args, kwargs)

    async def _run_async(self, job: _Job, args: list[Any],
                         kwargs: dict[str, Any]) -> None:
        _current.set(job.ctx)
        assert job.tf is not None
        try:
            value = await job.tf.fn(*args, **kwargs)
        except asyncio.CancelledError:
            self._end(job, False, "cancelled", True)
            return
        except BaseException as e:  # every failure becomes the error
            self._fail(job, e)
            return
        self._ok(job, value)

    def _run_sync(self, job: _Job, args: list[Any],
                  kwargs: dict[str, Any]) -> None:
        token = _current.set(job.ctx)
        assert job.tf is not None
        try:
            value = job.tf.fn(*args, **kwargs)
        except BaseException as e:
            self._fail(job, e)
            return
        finally:
            _current.reset(token)
        self._ok(job, value)

    def _ok(self, job: _Job, value: Any) -> None:
        try:
            data = b"" if value is None else pack(value)
        except Exception as e:
            self._end(job, False, f"result of {job.ctx.handler} cannot be "
                      f"serialised with msgpack: {e}", False)
            return
        log.debug("task %d %s done", job.ctx.id, job.ctx.handler)
        self._end(job, True, data, True)

    def _fail(self, job: _Job, e: BaseException) -> None:
        text = "".join(traceback.format_exception(e)).rstrip()
        retry = not isinstance(e, Reject)
        log.error("task %d %s attempt %d failed%s:\n%s", job.ctx.id,
                  job.ctx.handler, job.ctx.attempt,
                  "" if retry else " (no retry)", text)
        self._end(job, False, text, retry)

    def _end(self, job: _Job, ok: bool, data: Any, retry: bool) -> None:
        """Send the outcome from the done pool; any thread."""
        if job.ended:
            return
        job.ended = True
        self.done_pool.submit(self._send, job, ok, data, retry)

    def _send(self, job: _Job, ok: bool, data: Any, retry: bool) -> None:
        L = _lib.lib()
        if ok:
            rv = L.tb_job_complete(job.j, data or None, len(data))
        else:
            rv = L.tb_job_fail(job.j, str(data).encode("utf-8", "replace"),
                               1 if retry else 0)
        if rv == TB_ESTALE:
            log.warning("task %d %s: result refused (stale attempt)",
                        job.ctx.id, job.ctx.handler)
        elif rv == TB_ECLOSED and self.stopping:
            # Handed back at the stop, then ended (which frees the job):
            # the broker runs it again; nothing was lost.
            log.debug("task %d %s: ended after the hand-back", job.ctx.id,
                      job.ctx.handler)
        elif rv != TB_OK:
            log.warning("task %d %s: %s", job.ctx.id, job.ctx.handler,
                        error_for_code(rv, "send outcome"))
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.jobs.pop, job.j, None)

    # ---- running and stopping --------------------------------------------

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGINT:
            self.sigints += 1
        if self.stopping:
            if signum == signal.SIGINT and self.sigints >= 2:
                log.warning("second SIGINT: stopping at once (%d tasks "
                            "running)", len(self.jobs))
                logging.shutdown()
                os._exit(130)
            return
        log.info("%s: stopping; running tasks get %.1f s",
                 signal.Signals(signum).name, self.grace)
        self.stopping = True
        assert self.stopped is not None
        self.stopped.set()

    async def run(self, *, signals: bool = True) -> int:
        """Serve until a signal (or :meth:`request_stop`) stops the
        worker; return the exit code. With ``signals=False`` (a worker
        embedded in an application, see :meth:`start`) no signal handler
        is installed and the process is never exited from here."""
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        self.embedded = not signals
        self.open()
        L = _lib.lib()
        fd = c_int(-1)
        rv = L.tb_worker_fd(self.w, byref(fd))
        if rv != TB_OK:
            raise error_for_code(rv, "worker fd")
        if signals:
            for s in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(s, self._signal, s)
        self.loop.add_reader(fd.value, self._ready)
        if self._started is not None:
            self._started.set()
        log.info("worker %s serving %s (queues: %s; %d slots, %d threads)",
                 self.name, ", ".join(self.tasks),
                 ",".join(self.queues) or "any", self.concurrency,
                 self.threads)
        self._ready()
        await self.stopped.wait()
        # Stop taking; let running tasks end within the grace; hand the
        # rest back. tb_worker_stop blocks, so it runs on a thread.
        stop_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="taskbroker-stop")
        # No more takes: the descriptor would stay readable, so cancel
        # notices are looked for every 50 ms until the stop returns.
        self.loop.remove_reader(fd.value)
        stop = self.loop.run_in_executor(
            stop_pool, L.tb_worker_stop, self.w, int(self.grace * 1000))
        while True:
            done, _ = await asyncio.wait({stop}, timeout=0.05)
            if done:
                break
            self._check_cancels()
        rv = stop.result()
        stop_pool.shutdown(wait=False)
        left = [j for j in self.jobs.values() if not j.ended]
        if left:
            log.warning("%d tasks still running after the grace were "
                        "handed back", len(left))
        elif rv == TB_ETIMEDOUT:
            log.info("tasks sent to this worker but not started were "
                     "handed back")
        for job in left:
            self._cancel(job)
        await asyncio.sleep(0)
        w, self.w = self.w, None
        busy = any(not j.ended for j in self.jobs.values())
        if not busy:
            L.tb_worker_close(w)
        self.done_pool.shutdown(wait=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped")
        if busy and self.embedded:
            log.warning("a sync task that ignores current_task().cancelled "
                        "is still running on its thread")
            return 0
        if busy:
            # A sync task that ignores current_task().cancelled: its thread
            # cannot be stopped; leave without waiting for it.
            logging.shutdown()
            os._exit(0)
        return 0


    # ---- embedded in an application ----------------------------------------

    async def start(self) -> None:
        """Serve on the running event loop, inside the application's
        process (no signal handlers; the application's lifecycle stops it
        with :meth:`stop`). Returns once the worker is connected; raises
        what :meth:`open` raises."""
        if self._task is not None:
            raise RuntimeError("this worker is already started")
        self._started = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self.run(signals=False), name=f"taskbroker-worker {self.name}")
        started = asyncio.ensure_future(self._started.wait())
        done, _ = await asyncio.wait({started, self._task},
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            started.cancel()
            self._task.result()  # raises the failure to open
            raise RuntimeError("the worker stopped at once")

    def request_stop(self) -> None:
        """Stop taking tasks; running ones get the grace, as at SIGTERM."""
        if self.stopped is not None and not self.stopping:
            self.stopping = True
            self.stopped.set()

    async def stop(self) -> None:
        """Stop a worker started with :meth:`start` and wait until it has
        handed back what it did not finish within the grace."""
        task, self._task = self._task, None
        if task is None:
            return
        self.request_stop()
        await task


def run_worker(args: argparse.Namespace) -> int:
    """Entry point of ``python3 -m taskbroker worker``."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s taskbroker-worker[%(process)d] %(levelname)s "
               "%(message)s")
    try:
        broker = load_broker(args.target)
        queues = tuple(q for q in args.queues.split(",") if q)
        w = Worker(broker, queues=queues, concurrency=args.concurrency,
                   threads=args.threads, grace=args.grace, name=args.name,
                   url=args.url)
    except Exception as e:
        log.error("cannot start: %s", e)
        return 2
    try:
        return asyncio.run(w.run())
    except Exception as e:
        log.error("worker: %s", e)
        return 1
