"""Load-balancing decisions in the journal, and as `load.limit.changed` records."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import orjson

from edge.domain.units import iso_utc
from edge.store.journal import enqueue


def record_limit_changes(
    conn: sqlite3.Connection, changes: list[dict[str, Any]], now: datetime
) -> None:
    """Journal limit changes a charger accepted and enqueue each for the cloud in the
    same transaction (DESIGN.md §2, §4.4)."""
    for change in changes:
        conn.execute(
            "INSERT INTO events (station, type, time, data) VALUES (?, ?, ?, ?)",
            (change["station"], "load.limit.changed", iso_utc(now), orjson.dumps(change)),
        )
        enqueue(conn, change["station"], "load.limit.changed", now, change, now)


def recent_limit_changes(
    conn: sqlite3.Connection, station: str | None = None, limit: int = 100
) -> list[Any]:
    """The newest journaled limit changes, newest first."""
    sql = "SELECT data FROM events WHERE type = 'load.limit.changed'"
    args: tuple[Any, ...] = ()
    if station is not None:
        sql, args = sql + " AND station = ?", (station,)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    return [orjson.loads(r[0]) for r in rows]
