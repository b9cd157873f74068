"""Exceptions: one base class, one class per stable error name of the
broker and client library (``tb_errname``), and the package's own.

Every exception raised for a ``TB_E*`` code is an instance of the class
named after that code's wire name, with ``.code`` (the int) and ``.name``
(the wire name, e.g. ``"not_found"``); its message is ``tb_strerror``'s
text, followed by what the call was doing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .client import Task

__all__ = [
    "TaskbrokerError", "InvalidArgument", "OutOfMemory", "TimedOut",
    "Unreachable", "Closed", "ForkError", "ProtocolError",
    "UnsupportedVersion", "UnknownOp", "BadRequest", "TooBig", "NotFound",
    "UnknownHandler", "ShuttingDown", "WrongState", "StoreError",
    "InternalError", "Busy", "SystemCallError", "QueueFull", "Unauthorized",
    "TLSError", "Stale", "TaskFailed", "TaskCancelled", "ArgumentError",
    "LibraryNotFound", "error_for_code",
]


class TaskbrokerError(Exception):
    """Base of every taskbroker exception.

    ``code`` is the library's error code (``None`` for errors raised by the
    Python package itself) and ``name`` its stable wire name.
    """

    code: Optional[int] = None
    name: str = "error"

    def __init__(self, message: str = "", *, code: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name


def _cls(cname: str, code: int, wire: str, *bases: type,
         doc: str = "") -> Any:
    cls = type(cname, (TaskbrokerError,) + bases,
               {"code": code, "name": wire,
                "__doc__": doc or f"The library's ``{wire}`` error."})
    cls.__module__ = __name__
    return cls


InvalidArgument = _cls("InvalidArgument", 1, "invalid_argument", ValueError)
OutOfMemory = _cls("OutOfMemory", 2, "out_of_memory", MemoryError)
TimedOut = _cls("TimedOut", 3, "timed_out", TimeoutError,
                doc="``timed_out``: no reply, or the task had not ended in "
                    "time (then ``.task`` is the task as it was).")
Unreachable = _cls("Unreachable", 4, "unreachable", ConnectionError,
                   doc="``unreachable``: no broker answers at the url.")
Closed = _cls("Closed", 5, "closed")
ForkError = _cls(
    "ForkError", 6, "forked", RuntimeError,
    doc="``forked``: used in a child process after fork() although the "
        "parent had used taskbroker (nng is not fork-safe). Create the "
        "Broker in the child only, before any use in the parent, or start "
        "children with the 'spawn' method.")
ProtocolError = _cls("ProtocolError", 7, "protocol_error")
UnsupportedVersion = _cls("UnsupportedVersion", 8, "unsupported_version")
UnknownOp = _cls("UnknownOp", 9, "unknown_op")
BadRequest = _cls("BadRequest", 10, "bad_request", ValueError)
TooBig = _cls("TooBig", 11, "too_big", ValueError)
NotFound = _cls("NotFound", 12, "not_found", LookupError,
                doc="``not_found``: no such task (or it was pruned), or no "
                    "such schedule.")
UnknownHandler = _cls("UnknownHandler", 13, "unknown_handler", LookupError)
ShuttingDown = _cls("ShuttingDown", 14, "shutting_down")
WrongState = _cls("WrongState", 15, "wrong_state")
StoreError = _cls("StoreError", 16, "store_error")
InternalError = _cls("InternalError", 17, "internal_error")
Busy = _cls("Busy", 18, "busy")
SystemCallError = _cls("SystemCallError", 19, "system_error", OSError)
QueueFull = _cls("QueueFull", 20, "queue_full")
Unauthorized = _cls("Unauthorized", 21, "unauthorized", PermissionError)
TLSError = _cls("TLSError", 22, "tls_error")
Stale = _cls("Stale", 23, "stale",
             doc="``stale``: a worker's result for an attempt that is no "
                 "longer current was refused (fencing).")

_BY_CODE: dict[int, Any] = {
    c.code: c for c in (
        InvalidArgument, OutOfMemory, TimedOut, Unreachable, Closed,
        ForkError, ProtocolError, UnsupportedVersion, UnknownOp, BadRequest,
        TooBig, NotFound, UnknownHandler, ShuttingDown, WrongState,
        StoreError, InternalError, Busy, SystemCallError, QueueFull,
        Unauthorized, TLSError, Stale)
}
BY_NAME: dict[str, Any] = {c.name: c for c in _BY_CODE.values()}


def error_for_code(code: int, what: str = "",
                   task: Optional["Task"] = None) -> TaskbrokerError:
    """Build the exception for library code ``code`` (not raised).

    ``what`` says what was being done; the message is ``tb_strerror``'s
    text, then ``what``.
    """
    from . import _lib

    try:
        lib = _lib.lib()
        msg = _lib.s(lib.tb_strerror(code)) or ""
        name = _lib.s(lib.tb_errname(code)) or "unknown"
    except _lib.LibraryNotFound:
        msg, name = f"error {code}", "unknown"
    cls = _BY_CODE.get(code)
    text = f"{what}: {msg}" if what else msg
    if cls is None:
        err = TaskbrokerError(text, code=code, name=name)
    else:
        err = cls(text)
    if task is not None:
        err.task = task  # type: ignore[attr-defined]
    return err


class TaskFailed(TaskbrokerError):
    """A task ended without a result (``dead``): ``.task`` holds it and
    ``.error`` its last error (with the traceback from a Python worker)."""

    name = "task_failed"

    def __init__(self, task: "Task", message: Optional[str] = None) -> None:
        self.task = task
        self.error = task.error
        super().__init__(
            message or f"task {task.id} ({task.handler}) ended {task.state}"
            + (f": {task.error}" if task.error else ""))


class TaskCancelled(TaskFailed):
    """A task ended ``cancelled``."""

    name = "task_cancelled"


class ArgumentError(TaskbrokerError, TypeError):
    """A deferred call does not fit the function's signature, or an
    argument cannot be serialised with msgpack. Raised in the caller, at
    defer time, before anything is sent."""

    name = "bad_arguments"


from ._lib import LibraryNotFound  # noqa: E402  (re-exported)


def describe(exc: Any) -> str:
    """One line naming an exception, for logs."""
    return f"{type(exc).__name__}: {exc}"
