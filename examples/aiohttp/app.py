"""An aiohttp app that relays a POSTed URL's content to another URL, in
the background (run it as README.md shows).

POST /jobs {"url": ..., "forward_to": ...} answers 202 with the task's id
once the broker has stored the fetch; GET /jobs/{id} tells its state.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from taskbroker import NotFound
from taskbroker.aiohttp import BROKER, broker_ctx

from tasks import broker, fetch


async def submit(request: web.Request) -> web.Response:
    """Accept a relay job."""
    data = await request.json()
    handle = await fetch.adefer(str(data["url"]), str(data["forward_to"]))
    return web.json_response({"id": handle.id}, status=202)


async def status(request: web.Request) -> web.Response:
    """A job's state (and the fetched length once done)."""
    try:
        task = await request.app[BROKER].status(int(request.match_info["id"]))
    except NotFound:
        raise web.HTTPNotFound() from None
    return web.json_response({"id": task.id, "state": task.state,
                              "result": task.result, "error": task.error})


INBOX: web.AppKey[list[dict[str, object]]] = web.AppKey("inbox", list)


async def receive(request: web.Request) -> web.Response:
    """A stand-in for the service the content is posted on to."""
    body = await request.read()
    request.app[INBOX].append({"source": request.headers.get("X-Source"),
                               "length": len(body),
                               "text": body.decode("utf-8", "replace")})
    return web.json_response({"ok": True})


async def received(request: web.Request) -> web.Response:
    """What /inbox has received."""
    return web.json_response(request.app[INBOX])


def make_app() -> web.Application:
    """The application: the broker is opened with it and closed with it."""
    app = web.Application()
    app[INBOX] = []
    app.cleanup_ctx.append(broker_ctx(broker, close=True))
    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs/{id}", status)
    app.router.add_post("/inbox", receive)
    app.router.add_get("/inbox", received)
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port)
