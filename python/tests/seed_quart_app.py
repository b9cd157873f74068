"""The seed app as Quart users write it today, for comparison: Quart's own
in-process add_background_task writes the note."""

import asyncio
import os
import sqlite3

from quart import Quart, request

app = Quart(__name__)
DB_PATH = os.environ.get("NOTES_DB", "notes.db")


async def write_to_db(text: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    conn = sqlite3.connect(DB_PATH, timeout=30)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (task_id INTEGER "
                     "PRIMARY KEY, text TEXT NOT NULL, attempt INTEGER)")
        conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))
    conn.close()


@app.post("/notes")
async def create_note():
    data = await request.get_json()
    app.add_background_task(write_to_db, data["text"],
                            float(data.get("seconds", 0)))
    return {"accepted": True, "pid": os.getpid()}, 202
