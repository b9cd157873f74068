"""The ASAB example's tasks: compress the log files that land in an inbox.

``watch`` is the forever function (ASAB's ``run_forever``): it scans the
inbox and defers one ``compress`` per file; it returns now and then, and
the broker starts it again. ``compress`` does the blocking gzip work on a
thread.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil

import taskbroker

broker = taskbroker.Broker()  # $TASKBROKER_URL, else the broker's default


def _gzip(path: str) -> str:
    out = path + ".gz"
    with open(path, "rb") as src, gzip.open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(out + ".part", out)
    os.remove(path)
    return out


@broker.task(name="logs.compress", max_attempts=3)
async def compress(path: str) -> str:
    """Gzip path to path.gz (then remove path); return the new name. Run
    twice, the second run finds path gone and has nothing to do."""
    if not os.path.exists(path):
        return path + ".gz"
    return await asyncio.to_thread(_gzip, path)


@broker.task(name="logs.watch")
async def watch(inbox: str, rounds: int = 20, interval: float = 0.25) -> int:
    """Scan inbox ``rounds`` times, ``interval`` seconds apart, deferring
    a compress for each ``*.log`` file; return how many were deferred (the
    broker then starts this forever function again)."""
    seen = 0
    for _ in range(rounds):
        for name in sorted(os.listdir(inbox)):
            if name.endswith(".log"):
                path = os.path.join(inbox, name)
                # The key makes a second scan's defer of the same file a
                # no-op while the first is not done.
                await compress.options(key="compress:" + path).adefer(path)
                seen += 1
        await asyncio.sleep(interval)
    return seen
