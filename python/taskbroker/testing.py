"""Test helpers: a real ``taskbrokerd`` per test, ``wait_all``, eager mode.

Context manager::

    from taskbroker.testing import run_broker

    with run_broker() as srv:          # a fresh broker on ipc in a temp dir
        tid = srv.broker.submit("noop")
        with srv.broker.wait_all():    # waits for tasks submitted inside
            srv.broker.submit("sleep", {"ms": 10})

pytest: the package registers a plugin (entry point ``pytest11``) with the
fixtures ``taskbroker_server`` (a :class:`BrokerProcess`, one per test) and
``taskbroker_client`` (its :class:`~taskbroker.Broker`). The broker binary
is ``$TB_BROKER_BIN``, else ``taskbrokerd`` on ``PATH``.

Eager mode (no broker at all): ``Broker(eager=True)``, or
``with eager(broker):``, runs ``fn.defer(...)`` in-process at once, after
round-tripping the arguments (and the result) through msgpack as a real
worker would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator, Optional, Sequence

from .client import Broker
from .errors import TaskbrokerError

__all__ = ["BrokerProcess", "run_broker", "eager", "broker_binary"]


def broker_binary() -> str:
    """The taskbrokerd to run: ``$TB_BROKER_BIN``, else ``PATH``'s."""
    env = os.environ.get("TB_BROKER_BIN")
    if env:
        # Brokers run in their own directories: a relative path is this
        # directory's.
        return os.path.abspath(env) if os.sep in env else env
    found = shutil.which("taskbrokerd")
    if not found:
        raise FileNotFoundError(
            "taskbrokerd not found: set TB_BROKER_BIN to its path (e.g. "
            "build/broker/taskbrokerd) or put it on PATH")
    return found


def _stop_pid(proc: "subprocess.Popen[bytes]", grace: float) -> int:
    """SIGTERM, then SIGKILL after grace seconds; by pid only."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


class BrokerProcess:
    """A taskbrokerd started for a test, with its own data directory and
    ipc sockets in ``dir``. ``broker`` is a :class:`Broker` for it;
    :meth:`client` makes more. Stop it with :meth:`stop` (SIGTERM, then
    SIGKILL after ``stop_grace``), or use it as a context manager."""

    def __init__(self, dir: Optional[str] = None, *,
                 args: Sequence[str] = (), binary: Optional[str] = None,
                 start_timeout: float = 10.0, stop_grace: float = 10.0,
                 log: Optional[str] = None) -> None:
        self._own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="tbpy-")
        self.data_dir = os.path.join(self.dir, "data")
        self.url = f"ipc://{self.dir}/tb.sock"
        self.events_url = f"ipc://{self.dir}/tb-events.sock"
        self.binary = binary or broker_binary()
        self.args = list(args)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.log_path = log or os.path.join(self.dir, "broker.log")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._brokers: list[Broker] = []
        self.broker: Broker = self.client()

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def client(self, **kwargs: Any) -> Broker:
        """A new Broker for this broker process (closed at stop)."""
        b = Broker(self.url, events_url=self.events_url, **kwargs)
        self._brokers.append(b)
        return b

    def env(self) -> dict[str, str]:
        """An environment whose TASKBROKER_URL/EVENTS_URL point here (and
        whose TASKBROKER_LIB, if a relative path, is made absolute)."""
        e = dict(os.environ)
        e["TASKBROKER_URL"] = self.url
        e["TASKBROKER_EVENTS_URL"] = self.events_url
        lib = e.get("TASKBROKER_LIB")
        if lib and os.sep in lib:  # for processes run in other directories
            e["TASKBROKER_LIB"] = os.path.abspath(lib)
        return e

    def start(self) -> "BrokerProcess":
        """Start the broker and wait until it answers a ping."""
        cmd = [self.binary, f"--data-dir={self.data_dir}",
               f"--listen={self.url}", f"--events={self.events_url}",
               "--durability=normal", "--shutdown-timeout=5", *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL,
                                         cwd=self.dir)
        sock = self.url[len("ipc://"):]
        deadline = time.monotonic() + self.start_timeout
        # Wait for the socket file first: a dial that races the listener's
        # start is what nng 1.5.2's listener bug does not forgive.
        while not os.path.exists(sock):
            if self.proc.poll() is not None:
                raise RuntimeError(f"taskbrokerd exited with "
                                   f"{self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"taskbrokerd did not listen: "
                                   f"{self._tail()}")
            time.sleep(0.01)
        ping = Broker(self.url, timeout=1.0)
        try:
            while True:
                try:
                    ping.ping()
                    break
                except TaskbrokerError:
                    if time.monotonic() > deadline or \
                            self.proc.poll() is not None:
                        self.stop()
                        raise TimeoutError(
                            f"taskbrokerd did not answer a ping: "
                            f"{self._tail()}") from None
                    time.sleep(0.02)
        finally:
            ping.close()
        return self

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def start_worker(self, target: str, *args: str,
                     env: Optional[dict[str, str]] = None
                     ) -> "subprocess.Popen[bytes]":
        """Start ``python -m taskbroker worker TARGET ARGS...`` against
        this broker; it is stopped (by pid) at :meth:`stop`."""
        e = self.env()
        if env:
            e.update(env)
        log = open(os.path.join(self.dir, f"worker{len(self.workers)}.log"),
                   "ab")
        w = subprocess.Popen([sys.executable, "-m", "taskbroker", "worker",
                              target, *args], env=e, stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
        log.close()
        self.workers.append(w)
        return w

    def stop(self) -> Optional[int]:
        """Stop workers and broker (SIGTERM, SIGKILL after the grace),
        close the clients, remove the temporary directory."""
        for w in self.workers:
            _stop_pid(w, self.stop_grace)
        for b in self._brokers:
            b.close()
        rc = None
        if self.proc is not None:
            rc = _stop_pid(self.proc, self.stop_grace)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def __enter__(self) -> "BrokerProcess":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def run_broker(*args: str, worker: Optional[str] = None,
               worker_args: Sequence[str] = (),
               worker_env: Optional[dict[str, str]] = None,
               **kwargs: Any) -> Iterator[BrokerProcess]:
    """Start a fresh taskbrokerd (extra command-line ``args``), optionally
    a worker process for ``worker`` (``MODULE[:ATTR]``, with
    ``worker_args`` and ``worker_env`` added to its environment), and stop
    both at the end."""
    bp = BrokerProcess(args=args, **kwargs)
    try:
        bp.start()
        if worker:
            bp.start_worker(worker, *worker_args, env=worker_env)
        yield bp
    finally:
        bp.stop()


@contextlib.contextmanager
def eager(broker: Broker) -> Iterator[Broker]:
    """Run broker's tasks eagerly inside the block."""
    old = broker.eager
    broker.eager = True
    try:
        yield broker
    finally:
        broker.eager = old


# ---- pytest plugin -------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the plugin needs pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def taskbroker_server() -> Iterator[BrokerProcess]:
        """A real taskbrokerd for one test (see :func:`run_broker`)."""
        with run_broker() as bp:
            yield bp

    @pytest.fixture
    def taskbroker_client(taskbroker_server: BrokerProcess) -> Broker:
        """A Broker connected to :func:`taskbroker_server`."""
        return taskbroker_server.broker
