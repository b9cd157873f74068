"""The app and tasks bench_python.py measures (served by hypercorn, run by
``python -m taskbroker worker bench_quart_app``).

POST /durable submits one task through taskbroker.quart; POST /inprocess
does the same work with Quart's own in-process add_background_task.
"""

from __future__ import annotations

from quart import Quart

import taskbroker
from taskbroker.quart import TaskBroker

broker = taskbroker.Broker()


@broker.task(name="bench.anoop")
async def anoop(n: int = 0) -> None:
    """A no-op async task."""


@broker.task(name="bench.noop")
def noop(n: int = 0) -> None:
    """A no-op sync task (the worker's thread pool)."""


async def local_noop(n: int = 0) -> None:
    """The in-process counterpart (Quart's add_background_task)."""


app = Quart(__name__)
tasks = TaskBroker(app, broker)


@app.post("/durable")
async def durable() -> tuple[str, int]:
    tasks.add_background_task(anoop, 1)
    return "", 202


@app.post("/inprocess")
async def inprocess() -> tuple[str, int]:
    app.add_background_task(local_noop, 1)
    return "", 202
