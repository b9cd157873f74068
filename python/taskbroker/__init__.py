"""taskbroker: durable background tasks for Python, over libtaskbroker.

Blocking client::

    from taskbroker import Broker
    broker = Broker()                     # $TASKBROKER_URL or the default
    tid = broker.submit("sleep", {"ms": 100}, queue="default")
    task = broker.wait(tid, timeout=5)    # Task(state="done", ...)

asyncio (never blocks the loop)::

    abroker = broker.aio                  # or AsyncBroker(url)
    tid = await abroker.submit("noop")
    task = await abroker.wait(tid)

Tasks::

    @broker.task(queue="emails", max_attempts=3)
    def send(to: str, body: str) -> None: ...

    h = send.defer("a@example.com", body="hi")   # checked and serialised now
    h.result(timeout=10)

See the README's "Python" section, :mod:`taskbroker.testing` for tests.
"""

from __future__ import annotations

from .client import (
    FINAL_STATES, STATES, AsyncBroker, AsyncSubscription, Broker, Event,
    QueueInfo, Schedule, Stats, Subscription, Task, TaskSpec,
    WorkerHandlerInfo, WorkerInfo, pack, unpack,
)
from ._dropin import NotATask
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .tasks import (
    NoRetry, Reject, TaskContext, TaskFunction, TaskHandle, current_task,
)

__version__ = "0.1.0"

__all__ = [
    "Broker", "AsyncBroker", "Task", "TaskSpec", "Event", "Stats",
    "Schedule", "QueueInfo", "WorkerInfo", "WorkerHandlerInfo",
    "Subscription", "AsyncSubscription", "STATES",
    "FINAL_STATES", "TaskFunction", "TaskHandle", "TaskContext",
    "current_task", "Reject", "NoRetry", "NotATask", "pack", "unpack",
    "__version__",
] + list(_errors_all)
