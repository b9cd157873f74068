"""The Quart seed app, ported: POST /notes writes a note in the background.

The only change from the Quart original is the extension line and the
call's owner (``tasks.add_background_task`` for ``app.add_background_task``);
``TaskBroker(app, broker, replace=True)`` would keep the latter as well.
Run it as examples/quart/README.md shows.
"""

from __future__ import annotations

import os

from quart import Quart, request

from taskbroker.quart import TaskBroker

from tasks import broker, connect, write_note

app = Quart(__name__)
# NOTES_SERVE=1: this process also runs the tasks (no separate worker).
tasks = TaskBroker(app, broker, serve=os.environ.get("NOTES_SERVE") == "1")


@app.post("/notes")
async def create_note() -> tuple[dict[str, object], int]:
    """Accept a note; it is written by a task once the broker has it."""
    data = await request.get_json()
    tasks.add_background_task(write_note, str(data["text"]),
                              float(data.get("seconds", 0)))
    return {"accepted": True, "pid": os.getpid()}, 202


@app.get("/notes")
async def list_notes() -> dict[str, object]:
    """The notes written so far."""
    with connect() as conn:
        rows = conn.execute("SELECT text FROM notes ORDER BY task_id")
        notes = [r[0] for r in rows]
    conn.close()
    return {"notes": notes}
