"""A real ASAB application using TaskBrokerService, run by test_asab.py as
``python asab_app.py CASE [ARG]``: it prints one JSON line of findings and
exits. The broker comes from $TASKBROKER_URL."""

import asyncio
import functools
import json
import os
import sys
import threading
import time

import asab

import taskbroker
from taskbroker.asab import TASK_DONE, NotATask, TaskBrokerService

broker = taskbroker.Broker()


@broker.task(name="asab.add")
async def add(a: int, b: int = 0) -> int:
    await asyncio.sleep(0)
    return a + b


@broker.task(name="asab.mul")
def mul(a: int, b: int) -> int:
    return a * b


@broker.task(name="asab.fail", max_attempts=1)
async def fail() -> None:
    raise ValueError("failed on purpose")


@broker.task(name="asab.tick")
async def tick(path: str) -> None:
    """A forever function that ends after each tick (the broker starts it
    again)."""
    with open(path, "a") as f:
        f.write("tick\n")


@broker.task(name="asab.explode")
async def explode(path: str) -> None:
    """A forever function that fails at once, every time."""
    with open(path, "a") as f:
        f.write(f"{time.monotonic()}\n")
    raise ValueError("exploded")


async def unregistered() -> None:
    pass


class App(asab.Application):
    def __init__(self) -> None:
        super().__init__(args=[])
        self.Tasks = TaskBrokerService(self, broker=broker, serve=True,
                                       grace=1)
        self.done: list = []
        self.PubSub.subscribe(TASK_DONE, self.on_done)
        if sys.argv[1] == "early":  # before the loop runs, as ASAB allows
            self.Tasks.schedule(add(100, 1))
            self.Tasks.run_forever(functools.partial(tick, sys.argv[2]))

    def on_done(self, message_type: str, ev: taskbroker.Event) -> None:
        self.done.append(ev)

    async def until(self, cond, timeout: float = 15.0, what: str = ""):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waiting for {what}")
            await asyncio.sleep(0.02)

    async def bridge_up(self) -> None:
        """Events connect in the background: schedule probes until one's
        task_done arrives."""
        deadline = time.monotonic() + 10
        while not any(e.result == -1 for e in self.done):
            if time.monotonic() > deadline:
                raise TimeoutError("no task_done from the bridge")
            self.Tasks.schedule(add(-1))
            await asyncio.sleep(0.1)
        await self.Tasks.flush()
        await asyncio.sleep(0)
        self.done.clear()

    async def main(self) -> None:
        try:
            out = await getattr(self, "case_" + sys.argv[1])(*sys.argv[2:])
        except Exception as e:
            out = {"error": repr(e)}
        print(json.dumps(out), flush=True)
        self.stop()

    # ---- cases -----------------------------------------------------------

    async def case_schedule(self) -> dict:
        await self.bridge_up()
        self.Tasks.schedule(add(1, 2), add(3, b=4))          # as ASAB users
        self.Tasks.schedule(functools.partial(add, 5), functools.partial(
            mul.options(queue="other"), 2, 3), functools.partial(mul, 6, 7))
        self.Tasks.schedule(fail())
        errors = []

        class Thing:
            async def method(self) -> None:
                pass

        async def closure() -> None:
            pass

        for bad in (Thing().method, closure, unregistered(), lambda: 1):
            try:
                self.Tasks.schedule(bad)
            except NotATask as e:
                errors.append(str(e))
        try:
            self.Tasks.schedule(add(object()))
        except taskbroker.ArgumentError as e:
            errors.append("ArgumentError: " + str(e))
        await self.until(lambda: len(self.done) >= 6, what="6 task_done")
        return {"done": sorted([e.handler, e.state, e.result]
                               for e in self.done if e.state == "done"),
                "dead": [[e.handler, "ValueError: failed on purpose"
                          in (e.error or "")]
                         for e in self.done if e.state == "dead"],
                "errors": errors}

    async def case_threadsafe(self, nthreads: str, each: str) -> dict:
        ids: list = []
        lock = threading.Lock()

        def submitter(k: int) -> None:
            for i in range(int(each)):
                got = self.Tasks.schedule_threadsafe(add(k, i))
                with lock:
                    ids.extend(got)

        threads = [threading.Thread(target=submitter, args=(k,))
                   for k in range(int(nthreads))]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [t.join() for t in threads])
        elapsed = time.monotonic() - t0
        results = []
        for tid in ids:
            results.append(await broker.aio.result(tid, 20))
        return {"ids": len(set(ids)), "sum": sum(results),
                "seconds": elapsed}

    async def case_forever(self, path: str, want: str) -> dict:
        self.Tasks.run_forever(functools.partial(tick, path))
        self.Tasks.run_forever(functools.partial(tick, path))  # same key
        errors = []
        try:
            self.Tasks.run_forever(tick(path))
        except NotATask as e:
            errors.append(str(e))
        await self.Tasks.flush()

        def ticks() -> int:
            try:
                with open(path) as f:
                    return len(f.readlines())
            except FileNotFoundError:
                return 0

        await self.until(lambda: ticks() >= int(want), what="ticks")
        forever = [t for t in broker.list_tasks(handler="asab.tick")]
        return {"tasks": [[t.id, t.forever] for t in forever],
                "errors": errors}

    async def case_early(self, path: str) -> dict:
        def ticked() -> bool:
            return os.path.exists(path)

        await self.until(ticked, what="the forever task to tick")
        adds = await broker.aio.list_tasks(handler="asab.add")
        t = await broker.aio.wait(adds[0].id, 15)
        return {"adds": len(adds), "result": t.result}

    async def case_crashloop(self, path: str) -> dict:
        self.Tasks.run_forever(functools.partial(explode, path))
        await self.Tasks.flush()
        await self.until(lambda: broker.stats().crashloop >= 1, 20,
                         "the broker to report a crash loop")
        with open(path) as f:
            starts = [float(x) for x in f.read().split()]
        return {"starts": starts, "crashloop": broker.stats().crashloop}


if __name__ == "__main__":
    sys.exit(App().run())
