"""The ``python3 -m taskbroker`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m taskbroker",
        description="taskbroker's Python tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser(
        "worker", help="serve the tasks a module registered",
        description="Run the tasks registered with @broker.task in MODULE "
                    "(ATTR: the Broker; default: the module's Broker).")
    w.add_argument("target", metavar="MODULE[:ATTR]")
    w.add_argument("--queues", default="",
                   help="comma-separated queues to serve (default: any)")
    w.add_argument("--concurrency", type=int, default=16,
                   help="tasks at once (broker slots; default 16)")
    w.add_argument("--threads", type=int, default=4,
                   help="threads for plain def tasks (default 4)")
    w.add_argument("--grace", type=float, default=30.0,
                   help="seconds running tasks get at SIGTERM (default 30)")
    w.add_argument("--url", default=None, help="broker url (default: "
                   "$TASKBROKER_URL or the broker's default)")
    w.add_argument("--name", default=None, help="name shown by "
                   "'taskbroker workers'")
    w.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.cmd == "worker":
        try:
            from .worker import run_worker
        except ImportError as e:
            print(f"taskbroker worker: {e}", file=sys.stderr)
            return 2
        return run_worker(args)
    return 2
