"""The aiohttp example's tasks: fetch a URL, then post its content on.

By hand, aiohttp users keep a deque of URLs, a consumer task that runs the
blocking fetch on a thread pool (``loop.run_in_executor``) and then posts
the content on with a ClientSession. Here the fetch is a plain ``def``
task (a worker runs it on its thread pool) and the post is an ``async``
task deferred by the fetch: both are stored by the broker, retried on
failure, and survive a restart of any process.
"""

from __future__ import annotations

import urllib.request

import aiohttp

import taskbroker

broker = taskbroker.Broker()  # $TASKBROKER_URL, else the broker's default


@broker.task(name="relay.fetch", max_attempts=3, timeout=60)
def fetch(url: str, forward_to: str) -> int:
    """Fetch url (blocking, on the worker's thread pool) and defer the
    post of its content to forward_to; return the content's length."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        content = resp.read()
    post_content.defer(forward_to, content, source=url)
    return len(content)


@broker.task(name="relay.post", max_attempts=5, timeout=60)
async def post_content(to: str, content: bytes, source: str = "") -> int:
    """POST content to ``to`` (on the worker's event loop); return the
    HTTP status. A status of 400 or more fails the attempt (and retries)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(to, data=content,
                                headers={"X-Source": source}) as resp:
            resp.raise_for_status()
            return resp.status
