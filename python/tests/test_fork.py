"""nng is not fork-safe: a child of a process that used taskbroker must get
ForkError, never an nng abort."""

import os
import subprocess
import sys
import textwrap

import taskbroker as tb


def _in_child(fn) -> tuple[int, str]:
    """Run fn in a forked child; return its exit status and message."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(r)
        try:
            msg = fn()
            code = 0
        except BaseException as e:  # reported to the parent
            msg, code = f"{type(e).__name__}: {e}", 1
        os.write(w, msg.encode()[:4000])
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return status, msg


def test_child_of_a_used_broker_raises_fork_error(broker):
    broker.ping()  # the parent uses nng

    def child() -> str:
        out = []
        for call in (broker.ping, lambda: broker.submit("noop"),
                     lambda: tb.Broker(broker.url).ping(),
                     lambda: broker.events(),
                     lambda: broker.close()):
            try:
                call()
                out.append("ok")
            except tb.ForkError as e:
                assert e.code == 6 and e.name == "forked"
                out.append("ForkError")
        return ",".join(out)

    status, msg = _in_child(child)
    assert os.WIFEXITED(status), f"child died: status {status}"
    assert os.WEXITSTATUS(status) == 0, msg
    assert msg == "ForkError,ForkError,ForkError,ForkError,ok"
    assert broker.ping() == "0.1.0"  # the parent is unharmed


def test_async_in_child_raises_fork_error(broker):
    import asyncio

    broker.ping()

    def child() -> str:
        try:
            asyncio.run(broker.aio.submit("noop"))
        except tb.ForkError:
            return "ForkError"
        return "no error"

    status, msg = _in_child(child)
    assert os.WIFEXITED(status) and msg == "ForkError"


def test_broker_unused_before_fork_works_in_child(server):
    # A fresh interpreter that has never used nng: create a Broker, fork,
    # and the child may use it (it opens its own connection).
    script = textwrap.dedent(f"""
        import os, sys, taskbroker
        b = taskbroker.Broker({server.url!r})
        pid = os.fork()
        if pid == 0:
            b.submit("noop")
            os._exit(0)
        _, st = os.waitpid(pid, 0)
        assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st
        print(b.ping())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.1.0"
    assert server.broker.stats().submitted == 1
