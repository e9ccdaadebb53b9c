"""Reading the outbox for the uplink, and letting go of what the cloud acknowledged."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One record waiting for the cloud; `data` is its JSON as stored."""

    id: int
    record_id: str
    station: str | None
    seq: int
    type: str
    time: str
    data: bytes


def pending(conn: sqlite3.Connection, limit: int, after: int = 0) -> list[OutboxRecord]:
    """The oldest waiting records after row `after`, in commit order (which keeps each
    station's order)."""
    rows = conn.execute(
        "SELECT id, record_id, station, seq, type, time, data FROM outbox WHERE id > ?"
        " ORDER BY id LIMIT ?",
        (after, limit),
    ).fetchall()
    return [OutboxRecord(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]


def delivered(conn: sqlite3.Connection, ids: list[int]) -> int:
    """Drop records the cloud acknowledged (DESIGN.md §2: only then)."""
    done = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        done += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
    return done
