"""The example's task: write a note to a SQLite table, in a worker.

Quart's seed app did this with ``app.add_background_task(write_to_db,
conn, text)``, in the web process. Here the function is registered on a
Broker and runs in ``python -m taskbroker worker tasks`` (or in the web
process itself, with ``NOTES_SERVE=1``), and it opens its own connection:
a task's arguments must be plain data, not a live connection.
"""

from __future__ import annotations

import os
import sqlite3
import time

import taskbroker

broker = taskbroker.Broker()  # $TASKBROKER_URL, else the broker's default

DB_PATH = os.environ.get("NOTES_DB", "notes.db")


def connect() -> sqlite3.Connection:
    """The notes database, with its table."""
    conn = sqlite3.connect(DB_PATH, timeout=30)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (task_id INTEGER "
                 "PRIMARY KEY, text TEXT NOT NULL, attempt INTEGER)")
    return conn


@broker.task(name="notes.write", max_attempts=5)
def write_note(text: str, seconds: float = 0.0) -> int:
    """Store text (after ``seconds`` of pretend work); return the row's id.

    At-least-once: a task cut short (its worker killed) runs again, so the
    row is keyed by the task's id and a second run replaces it rather
    than adding a duplicate."""
    ctx = taskbroker.current_task()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ctx is not None and ctx.cancelled:
            raise RuntimeError("cancelled before the note was written")
        time.sleep(0.01)
    with connect() as conn:
        cur = conn.execute(
            "INSERT OR REPLACE INTO notes (task_id, text, attempt) "
            "VALUES (?, ?, ?)",
            (ctx.id if ctx else None, text, ctx.attempt if ctx else 0))
        row = cur.lastrowid
    conn.close()
    return int(row or 0)
