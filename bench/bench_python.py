"""Python figures of taskbroker, in one run (issue 10's benchmark).

1. POST latency of a Quart endpoint (hypercorn, one worker process) that
   submits one task through ``taskbroker.quart`` with the broker's
   durability ``full`` and ``normal``, against the same endpoint using
   Quart's in-process ``add_background_task``: requests sent open-loop at
   ``--rate`` per second for ``--seconds`` (after a second of warm-up) on
   keep-alive connections by an aiohttp client in this process (on the
   same cores); latency counted from each request's scheduled start (so a
   stall also delays the requests queued behind it). ``(submit)`` rows:
   the same pacing of ``AsyncBroker.submit`` from this process, no HTTP.
2. Throughput of one Python worker process (``python -m taskbroker
   worker``) for no-op ``async def`` and ``def`` tasks, and of the C
   worker (tests/integration/tbworker, ``--slots 16``), on the same broker
   build: ``--tasks`` tasks submitted beforehand, counted from the first
   done to the last.

Run from the repository after ``deploy/bootstrap.sh python-test`` and
``cmake --build build --target tbworker``::

    export TASKBROKER_LIB=build/client/libtaskbroker.so
    export TB_BROKER_BIN=build/broker/taskbrokerd
    build/venv/bin/python bench/bench_python.py [--rate 1000] \\
        [--seconds 5] [--tasks 20000]

Everything it starts (brokers, servers, workers) runs in a temporary
directory and is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Optional

import aiohttp

from taskbroker import TaskSpec
from taskbroker.testing import BrokerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile of xs (nearest rank)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def start_broker(durability: str, handlers: str) -> BrokerProcess:
    bp = BrokerProcess(args=[f"--durability={durability}",
                             f"--worker-handler={handlers}"])
    bp.start()
    return bp


def env_for(bp: BrokerProcess) -> dict[str, str]:
    env = bp.env()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (HERE, env.get("PYTHONPATH")) if p)
    return env


def start_web(bp: BrokerProcess) -> tuple["subprocess.Popen[bytes]", int]:
    log_path = os.path.join(bp.dir, "web.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "bench_quart_app:app",
             "--bind", "127.0.0.1:0", "--backlog", "1024"],
            cwd=bp.dir, env=env_for(bp), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with open(log_path) as f:
            m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", f.read())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("hypercorn did not start: see " + log_path)
        time.sleep(0.05)


def stop(proc: "subprocess.Popen[bytes]", grace: float = 10) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def load(port: int, path: str, rate: float, seconds: float,
               warmup: float = 1.0) -> dict[str, Any]:
    """Open-loop POSTs at rate/s; latencies (ms) of those after warmup."""
    conn = aiohttp.TCPConnector(limit=256)
    lat: list[float] = []
    errors = 0
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession(connector=conn) as session:
        loop = asyncio.get_running_loop()
        n = int(rate * (seconds + warmup))
        t0 = loop.time() + 0.1

        async def one(i: int) -> None:
            nonlocal errors
            at = t0 + i / rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.post(url) as r:
                    await r.read()
                    ok = r.status == 202
            except aiohttp.ClientError:
                ok = False
            done = loop.time()
            if not ok:
                errors += 1
            elif i / rate >= warmup:
                lat.append((done - at) * 1000)

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = loop.time() - t0
    return {"path": path, "rate": rate, "sent": n, "errors": errors,
            "achieved_rate": round(n / elapsed, 1),
            "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
            "max_ms": round(max(lat) if lat else float("nan"), 3)}


async def submit_load(bp: BrokerProcess, rate: float, seconds: float,
                      warmup: float = 1.0) -> dict[str, Any]:
    """The same open-loop pacing, submitting from asyncio in this process
    (no HTTP): the broker's share of the POST latency."""
    ab = bp.client().aio
    payload = b"\x82\xa4args\x91\x01\xa6kwargs\x80"
    lat: list[float] = []
    loop = asyncio.get_running_loop()
    await ab.ping()
    n = int(rate * (seconds + warmup))
    t0 = loop.time() + 0.1

    async def one(i: int) -> None:
        at = t0 + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await ab.submit("bench.anoop", payload_bytes=payload)
        if i / rate >= warmup:
            lat.append((loop.time() - at) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return {"path": "(submit)", "rate": rate, "sent": n, "errors": 0,
            "achieved_rate": round(n / (loop.time() - t0), 1),
            "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
            "max_ms": round(max(lat), 3)}


def bench_web(rate: float, seconds: float) -> list[dict[str, Any]]:
    out = []
    for durability in ("full", "normal"):
        bp = start_broker(durability, "bench.anoop,bench.noop")
        try:
            proc, port = start_web(bp)
            try:
                paths = ["/durable"] + (["/inprocess"]
                                        if durability == "normal" else [])
                for path in paths:
                    r = asyncio.run(load(port, path, rate, seconds))
                    r["durability"] = durability if path == "/durable" \
                        else "-"
                    if path == "/durable":
                        r["stored"] = bp.broker.stats().submitted
                    out.append(r)
                    print(json.dumps(r), flush=True)
            finally:
                stop(proc)
            r = asyncio.run(submit_load(bp, rate, seconds))
            r["durability"] = durability
            out.append(r)
            print(json.dumps(r), flush=True)
        finally:
            bp.stop()
    return out


def wait_done(bp: BrokerProcess, n: int,
              timeout: float) -> tuple[float, float]:
    """(time of the first done, time all n were done)."""
    b = bp.broker
    first: Optional[float] = None
    deadline = time.monotonic() + timeout
    while True:
        done = b.stats().done
        now = time.monotonic()
        if first is None and done > 0:
            first = now
        if done >= n:
            assert first is not None
            return first, now
        if now > deadline:
            raise TimeoutError(f"{done} of {n} done after {timeout} s")
        time.sleep(0.005)


def submit_all(bp: BrokerProcess, handler: str, n: int,
               payload: Optional[bytes]) -> None:
    b = bp.broker
    for i in range(0, n, 1000):
        b.submit_batch([TaskSpec(handler, payload_bytes=payload)
                        for _ in range(min(1000, n - i))])


def bench_worker(kind: str, n: int, c_worker: str) -> dict[str, Any]:
    handler = {"async": "bench.anoop", "sync": "bench.noop",
               "c": "bench.c"}[kind]
    bp = start_broker("normal", handler)
    try:
        submit_all(bp, handler, n, None if kind == "c" else
                   b"\x82\xa4args\x90\xa6kwargs\x80")
        log = open(os.path.join(bp.dir, "worker.log"), "ab")
        if kind == "c":
            cmd = [c_worker, "--url", bp.url, "--handler", handler,
                   "--slots", "16"]
        else:
            cmd = [sys.executable, "-m", "taskbroker", "worker",
                   "bench_quart_app:broker", "--concurrency", "64"]
        w = subprocess.Popen(cmd, env=env_for(bp), stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, cwd=bp.dir)
        log.close()
        try:
            t_first, t_last = wait_done(bp, n, 300)
        finally:
            stop(w)
        rate = (n - 1) / (t_last - t_first) if t_last > t_first else 0
        r = {"worker": {"async": "python async def", "sync": "python def",
                        "c": "C tbworker (16 slots)"}[kind],
             "tasks": n, "seconds": round(t_last - t_first, 3),
             "tasks_per_s": round(rate)}
        print(json.dumps(r), flush=True)
        return r
    finally:
        bp.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--c-worker", default=os.path.join(
        REPO, "build", "tests", "integration", "tbworker"))
    ap.add_argument("--skip-web", action="store_true")
    ap.add_argument("--skip-workers", action="store_true")
    args = ap.parse_args()
    print(json.dumps({"cpus": os.cpu_count(),
                      "loadavg": os.getloadavg()}), flush=True)
    web = [] if args.skip_web else bench_web(args.rate, args.seconds)
    workers = []
    if not args.skip_workers:
        for kind in ("async", "sync", "c"):
            if kind == "c" and not os.access(args.c_worker, os.X_OK):
                print(f"no C worker at {args.c_worker}: skipped", flush=True)
                continue
            workers.append(bench_worker(kind, args.tasks, args.c_worker))
    print("\nPOST latency (open loop, ms from the scheduled start)")
    print(f"{'endpoint':<12} {'durability':<10} {'rate/s':>8} {'p50':>8} "
          f"{'p99':>8} {'max':>8} {'errors':>6}")
    for r in web:
        print(f"{r['path']:<12} {r['durability']:<10} "
              f"{r['achieved_rate']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['max_ms']:>8} {r['errors']:>6}")
    if workers:
        print("\nworker throughput (no-op tasks)")
        for r in workers:
            print(f"{r['worker']:<24} {r['tasks_per_s']:>8} tasks/s "
                  f"({r['tasks']} in {r['seconds']} s)")
    print(json.dumps({"loadavg_end": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
