"""A pre-fork server as ``gunicorn --preload`` runs one, for test_quart_
example.py: ``python prefork_server.py MODULE:APP N``.

The app's module is imported in the parent (so its Broker is created
there, unused), the listening socket is opened there, then N children are
forked, each serving the app with hypercorn on the inherited socket. The
parent prints ``listening on PORT``; SIGTERM to it stops the children (by
pid) and then it exits.
"""

import asyncio
import importlib
import os
import signal
import socket
import sys
import traceback

from hypercorn.asyncio import serve
from hypercorn.config import Config


def child(app, sock: socket.socket) -> int:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    cfg = Config()
    cfg.bind = [f"fd://{sock.fileno()}"]

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM,
                                                      stop.set)
        await serve(app, cfg, shutdown_trigger=stop.wait)

    try:
        asyncio.run(run())
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


def main() -> int:
    target, n = sys.argv[1], int(sys.argv[2])
    mod, _, attr = target.partition(":")
    app = getattr(importlib.import_module(mod), attr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(child(app, sock))
        pids.append(pid)
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    signal.sigwait({signal.SIGTERM})
    code = 0
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
