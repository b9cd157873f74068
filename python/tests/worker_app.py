"""Tasks that test_worker.py runs in real worker processes."""

import asyncio
import time

import taskbroker

broker = taskbroker.Broker()


@broker.task(name="py.add")
def add(a: int, b: int) -> int:
    return a + b


@broker.task(name="py.aadd")
async def aadd(a: int, b: int) -> dict:
    await asyncio.sleep(0)
    return {"sum": a + b}


@broker.task(name="py.boom")
def boom(msg: str) -> None:
    raise ValueError(msg)


@broker.task(name="py.reject")
async def reject() -> None:
    raise taskbroker.Reject("this cannot work")


@broker.task(name="py.flaky")
def flaky() -> int:
    ctx = taskbroker.current_task()
    if ctx.attempt < 2:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@broker.task(name="py.slow_sync")
def slow_sync(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if taskbroker.current_task().cancelled:
            return "saw cancel"
        time.sleep(0.01)
    return "finished"


@broker.task(name="py.slow_async")
async def slow_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


HANDLERS = ",".join(broker.registry)
