"""An ASAB application that compresses the log files dropped in an inbox,
with its tasks on taskbroker (run it as README.md shows).

Before: ``self.TaskService.run_forever(self.watch)`` and
``self.TaskService.schedule(self.compress(path))``, in memory. After: the
same calls on ``TaskBrokerService``, with the functions in tasks.py.
"""

from __future__ import annotations

import functools
import logging
import os

import asab

import taskbroker
from taskbroker.asab import TASK_DONE, TaskBrokerService

from tasks import broker, watch

L = logging.getLogger("logs-app")


class LogsApp(asab.Application):
    def __init__(self) -> None:
        super().__init__()
        self.Inbox = os.environ.get("LOGS_INBOX", "inbox")
        os.makedirs(self.Inbox, exist_ok=True)
        # serve=True: this process runs the tasks too (its own worker).
        self.Tasks = TaskBrokerService(self, broker=broker, serve=True)
        self.PubSub.subscribe(TASK_DONE, self.on_task_done)

    async def main(self) -> None:
        self.Tasks.run_forever(functools.partial(watch, self.Inbox))
        L.warning("watching %s", os.path.abspath(self.Inbox))

    def on_task_done(self, message_type: str, ev: taskbroker.Event) -> None:
        if ev.handler == "logs.compress":
            L.warning("task %d %s: %s", ev.task_id, ev.state,
                      ev.result if ev.state == "done" else ev.error)


if __name__ == "__main__":
    LogsApp().run()
