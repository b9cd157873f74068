"""ctypes bindings to libtaskbroker (private).

The library is found, in this order, at ``$TASKBROKER_LIB`` (a path to
``libtaskbroker.so``, e.g. the build tree's ``build/client/libtaskbroker.so``),
then by the dynamic linker's usual search (what ``cmake --install`` put in
``/usr/local/lib`` or ``/usr/lib``), then in those directories by path.  It
is loaded on first use, so ``import taskbroker`` works without it (eager mode
needs no library).

ctypes releases the GIL around every foreign call, so a blocking ``tb_*``
call never holds other Python threads up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Optional

TB_OK = 0
TB_ETIMEDOUT = 3
TB_EFORK = 6
TB_EBUSY = 18

tb_id = c_uint64


class SubmitOpts(Structure):
    _fields_ = [
        ("queue", c_char_p),
        ("priority", c_int32),
        ("max_attempts", c_uint32),
        ("timeout_ms", c_uint32),
        ("delay_ms", c_uint32),
        ("run_at", c_int64),
        ("key", c_char_p),
        ("forever", c_int),
        ("max_crashes", c_uint32),
    ]


class TaskSpecC(Structure):
    _fields_ = [
        ("handler", c_char_p),
        ("payload", c_void_p),
        ("payload_len", c_size_t),
        ("opts", POINTER(SubmitOpts)),
    ]


class ListOpts(Structure):
    _fields_ = [
        ("queue", c_char_p),
        ("state", c_int),
        ("limit", c_uint32),
        ("after_id", tb_id),
        ("handler", c_char_p),
        ("min_age_ms", c_uint64),
        ("max_age_ms", c_uint64),
    ]


class StatsC(Structure):
    _fields_ = [
        ("pending", c_uint64),
        ("running", c_uint64),
        ("done", c_uint64),
        ("failed", c_uint64),
        ("dead", c_uint64),
        ("cancelled", c_uint64),
        ("submitted", c_uint64),
        ("completed", c_uint64),
        ("uptime_ms", c_uint64),
        ("workers", c_uint32),
        ("pid", c_uint32),
        ("schedules", c_uint64),
        ("forever", c_uint64),
        ("crashloop", c_uint64),
    ]


class ScheduleSpec(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("handler", c_char_p),
        ("queue", c_char_p),
        ("payload", c_void_p),
        ("payload_len", c_size_t),
        ("priority", c_int32),
        ("max_attempts", c_uint32),
        ("timeout_ms", c_uint32),
        ("every_ms", c_uint64),
        ("cron", c_char_p),
        ("catch_up", c_int),
    ]


class ScheduleInfoC(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("handler", c_char_p),
        ("queue", c_char_p),
        ("cron", c_char_p),
        ("every_ms", c_uint64),
        ("priority", c_int32),
        ("max_attempts", c_uint32),
        ("timeout_ms", c_uint32),
        ("catch_up", c_int),
        ("paused", c_int),
        ("next_at", c_int64),
        ("last_at", c_int64),
        ("fired", c_uint64),
        ("last_task", tb_id),
    ]


class QueueInfoC(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("pending", c_uint64),
        ("running", c_uint64),
        ("failed", c_uint64),
        ("dead", c_uint64),
        ("done", c_uint64),
        ("cancelled", c_uint64),
        ("paused", c_int),
        ("concurrency", c_uint32),
        ("max_pending", c_uint64),
        ("done_last_min", c_uint64),
        ("oldest_pending_ms", c_uint64),
        ("forever", c_uint32),
        ("crashloop", c_uint32),
    ]


class ConnOpts(Structure):
    _fields_ = [
        ("token", c_char_p),
        ("token_file", c_char_p),
        ("tls_ca_file", c_char_p),
        ("tls_cert_file", c_char_p),
        ("tls_key_file", c_char_p),
        ("tls_server_name", c_char_p),
    ]


class WorkerOpts(Structure):
    _fields_ = [
        ("handlers", POINTER(c_char_p)),
        ("nhandlers", c_size_t),
        ("queues", POINTER(c_char_p)),
        ("nqueues", c_size_t),
        ("slots", ctypes.c_uint),
        ("name", c_char_p),
        ("conn", POINTER(ConnOpts)),
    ]


class WorkerInfoC(Structure):
    _fields_ = [
        ("id", c_uint64),
        ("pid", c_uint64),
        ("host", c_char_p),
        ("name", c_char_p),
        ("handlers", c_char_p),
        ("queues", c_char_p),
        ("slots", c_uint32),
        ("running", c_uint32),
        ("done", c_uint64),
        ("since", c_int64),
    ]


class WHandlerInfoC(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("workers", c_uint32),
        ("waiting", c_uint64),
    ]


P = c_void_p  # every opaque handle
PP = POINTER(c_void_p)

# name: (restype, argtypes); a name missing from the library (an older
# build) is skipped and reported by has().
_PROTOS = {
    "tb_strerror": (c_char_p, [c_int]),
    "tb_errname": (c_char_p, [c_int]),
    "tb_state_name": (c_char_p, [c_int]),
    "tb_state_parse": (c_int, [c_char_p, POINTER(c_int)]),
    "tb_default_url": (c_char_p, []),
    "tb_default_events_url": (c_char_p, []),
    "tb_client_open": (c_int, [PP, c_char_p]),
    "tb_client_close": (None, [P]),
    "tb_client_set_timeout": (c_int, [P, c_int]),
    "tb_submit": (
        c_int,
        [P, c_char_p, c_void_p, c_size_t, POINTER(SubmitOpts), POINTER(tb_id)],
    ),
    "tb_submit_batch": (
        c_int, [P, POINTER(TaskSpecC), c_size_t, POINTER(tb_id)]
    ),
    "tb_status": (c_int, [P, tb_id, PP]),
    "tb_wait": (c_int, [P, tb_id, c_int, PP]),
    "tb_cancel": (c_int, [P, tb_id, PP]),
    "tb_list": (
        c_int, [P, POINTER(ListOpts), POINTER(POINTER(c_void_p)),
                POINTER(c_size_t)]
    ),
    "tb_task_list_free": (None, [POINTER(c_void_p), c_size_t]),
    "tb_task_id": (tb_id, [P]),
    "tb_task_state": (c_int, [P]),
    "tb_task_attempts": (c_uint32, [P]),
    "tb_task_max_attempts": (c_uint32, [P]),
    "tb_task_crashes": (c_uint32, [P]),
    "tb_task_max_crashes": (c_uint32, [P]),
    "tb_task_priority": (c_int32, [P]),
    "tb_task_queue": (c_char_p, [P]),
    "tb_task_handler": (c_char_p, [P]),
    "tb_task_result": (c_void_p, [P, POINTER(c_size_t)]),
    "tb_task_error": (c_char_p, [P]),
    "tb_task_created_at": (c_int64, [P]),
    "tb_task_started_at": (c_int64, [P]),
    "tb_task_finished_at": (c_int64, [P]),
    "tb_task_run_at": (c_int64, [P]),
    "tb_task_timeout_ms": (c_uint32, [P]),
    "tb_task_forever": (c_int, [P]),
    "tb_task_key": (c_char_p, [P]),
    "tb_task_free": (None, [P]),
    "tb_stats_get": (c_int, [P, POINTER(StatsC)]),
    "tb_ping": (c_int, [P, POINTER(c_void_p)]),
    "tb_shutdown": (c_int, [P]),
    "tb_retry": (c_int, [P, tb_id]),
    "tb_retry_queue": (c_int, [P, c_char_p, c_int, POINTER(c_uint64)]),
    "tb_pause": (c_int, [P, c_char_p]),
    "tb_resume": (c_int, [P, c_char_p]),
    "tb_drain": (c_int, [P, c_char_p, c_int]),
    "tb_purge": (c_int, [P, c_char_p, c_int, c_uint64, POINTER(c_uint64)]),
    "tb_schedule_add": (c_int, [P, POINTER(ScheduleSpec)]),
    "tb_schedule_rm": (c_int, [P, c_char_p]),
    "tb_schedule_pause": (c_int, [P, c_char_p, c_int]),
    "tb_schedule_list": (
        c_int, [P, POINTER(POINTER(ScheduleInfoC)), POINTER(c_size_t)]
    ),
    "tb_schedule_list_free": (None, [POINTER(ScheduleInfoC), c_size_t]),
    "tb_queues": (
        c_int, [P, POINTER(POINTER(QueueInfoC)), POINTER(c_size_t)]
    ),
    "tb_queues_free": (None, [POINTER(QueueInfoC), c_size_t]),
    "tb_client_set_max_inflight": (c_int, [P, c_int]),
    "tb_submit_async": (
        c_int,
        [P, c_char_p, c_void_p, c_size_t, POINTER(SubmitOpts), c_void_p,
         c_void_p, PP],
    ),
    "tb_submit_batch_async": (
        c_int, [P, POINTER(TaskSpecC), c_size_t, c_void_p, c_void_p, PP]
    ),
    "tb_wait_async": (c_int, [P, tb_id, c_int, c_void_p, c_void_p, PP]),
    "tb_client_completion_fd": (c_int, [P, POINTER(c_int)]),
    "tb_client_next_completed": (c_int, [P, PP]),
    "tb_op_status": (c_int, [P]),
    "tb_op_id": (tb_id, [P]),
    "tb_op_ids": (POINTER(tb_id), [P, POINTER(c_size_t)]),
    "tb_op_take_task": (c_void_p, [P]),
    "tb_op_arg": (c_void_p, [P]),
    "tb_op_free": (None, [P]),
    "tb_sub_open": (c_int, [PP, c_char_p, c_char_p]),
    "tb_sub_recv": (c_int, [P, c_int, PP]),
    "tb_sub_close": (None, [P]),
    "tb_event_topic": (c_char_p, [P]),
    "tb_event_name": (c_char_p, [P]),
    "tb_event_seq": (c_uint64, [P]),
    "tb_event_task_id": (tb_id, [P]),
    "tb_event_state": (c_int, [P]),
    "tb_event_attempt": (c_uint32, [P]),
    "tb_event_crashes": (c_uint32, [P]),
    "tb_event_duration_us": (c_uint64, [P]),
    "tb_event_time": (c_int64, [P]),
    "tb_event_queue": (c_char_p, [P]),
    "tb_event_handler": (c_char_p, [P]),
    "tb_event_result": (c_void_p, [P, POINTER(c_size_t)]),
    "tb_event_error": (c_char_p, [P]),
    "tb_event_free": (None, [P]),
    # Workers (newer libraries only).
    "tb_worker_open": (c_int, [PP, c_char_p, POINTER(WorkerOpts)]),
    "tb_worker_next": (c_int, [P, c_int, PP]),
    "tb_worker_try_next": (c_int, [P, PP]),
    "tb_worker_fd": (c_int, [P, POINTER(c_int)]),
    "tb_worker_stop": (c_int, [P, c_int]),
    "tb_worker_close": (None, [P]),
    "tb_job_id": (tb_id, [P]),
    "tb_job_attempt": (c_uint32, [P]),
    "tb_job_crashes": (c_uint32, [P]),
    "tb_job_handler": (c_char_p, [P]),
    "tb_job_queue": (c_char_p, [P]),
    "tb_job_payload": (c_void_p, [P, POINTER(c_size_t)]),
    "tb_job_deadline": (c_int64, [P]),
    "tb_job_cancelled": (c_int, [P]),
    "tb_job_complete": (c_int, [P, c_void_p, c_size_t]),
    "tb_job_fail": (c_int, [P, c_char_p, c_int]),
    "tb_workers": (
        c_int, [P, POINTER(POINTER(WorkerInfoC)), POINTER(c_size_t)]
    ),
    "tb_workers_free": (None, [POINTER(WorkerInfoC), c_size_t]),
    "tb_worker_handlers": (
        c_int, [P, POINTER(POINTER(WHandlerInfoC)), POINTER(c_size_t)]
    ),
    "tb_worker_handlers_free": (None, [POINTER(WHandlerInfoC), c_size_t]),
}

_CANDIDATES = (
    "libtaskbroker.so.0",
    "libtaskbroker.so",
    "/usr/local/lib/libtaskbroker.so.0",
    "/usr/local/lib/libtaskbroker.so",
    "/usr/local/lib/x86_64-linux-gnu/libtaskbroker.so.0",
    "/usr/lib/x86_64-linux-gnu/libtaskbroker.so.0",
    "/usr/lib/libtaskbroker.so.0",
)

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_missing: set[str] = set()


class LibraryNotFound(ImportError):
    """libtaskbroker.so could not be loaded."""


def _open() -> ctypes.CDLL:
    env = os.environ.get("TASKBROKER_LIB")
    if env:
        try:
            return ctypes.CDLL(env)
        except OSError as e:
            raise LibraryNotFound(
                f"TASKBROKER_LIB={env!r} cannot be loaded: {e}"
            ) from e
    tried = []
    found = ctypes.util.find_library("taskbroker")
    for name in ((found,) if found else ()) + _CANDIDATES:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            tried.append(f"{name}: {e}")
    raise LibraryNotFound(
        "libtaskbroker.so not found: install it (cmake --install build) "
        "or set TASKBROKER_LIB to its path, e.g. "
        "TASKBROKER_LIB=build/client/libtaskbroker.so (tried: "
        + "; ".join(tried) + ")"
    )


def lib() -> ctypes.CDLL:
    """Return the loaded library, loading and declaring it on first use."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            dll = _open()
            for name, (res, args) in _PROTOS.items():
                try:
                    fn = getattr(dll, name)
                except AttributeError:
                    _missing.add(name)
                    continue
                fn.restype = res
                fn.argtypes = args
            _lib = dll
    return _lib


def has(name: str) -> bool:
    """Whether the loaded library exports name (workers need a newer one)."""
    lib()
    return name not in _missing


def path() -> str:
    """The file the library was loaded from."""
    return str(lib()._name)


# libc's free, for the strings tb_ping returns.
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None


def free(p: int) -> None:
    _libc.free(p)


def s(b: Optional[bytes]) -> Optional[str]:
    """Decode a C string (None stays None)."""
    return None if b is None else b.decode("utf-8", "replace")


def enc(x: Optional[str]) -> Optional[bytes]:
    return None if x is None else x.encode("utf-8")
