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


def pending_of(
    conn: sqlite3.Connection, station: str, limit: int, after: int = 0
) -> list[OutboxRecord]:
    """One station's oldest waiting records after row `after`, in order."""
    rows = conn.execute(
        "SELECT id, record_id, station, seq, type, time, data FROM outbox"
        " WHERE station = ? AND id > ? ORDER BY id LIMIT ?",
        (station, after, limit),
    ).fetchall()
    return [OutboxRecord(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]


def cloud_tx(conn: sqlite3.Connection, session_id: int) -> int | None:
    """The cloud's 1.6 transactionId of a session, once its StartTransaction went up."""
    row = conn.execute("SELECT cloud_tx FROM uplink_tx WHERE session_id = ?", (session_id,))
    found = row.fetchone()
    return int(found[0]) if found else None


def local_session(conn: sqlite3.Connection, cloud: int) -> int | None:
    """The session the cloud knows as `cloud` (for its RemoteStopTransaction)."""
    found = conn.execute("SELECT session_id FROM uplink_tx WHERE cloud_tx = ?", (cloud,)).fetchone()
    return int(found[0]) if found else None


def map_tx(conn: sqlite3.Connection, session_id: int, cloud: int, record_id: int) -> None:
    """Store the cloud's id for a session and let go of its start record."""
    conn.execute(
        "INSERT INTO uplink_tx (session_id, cloud_tx) VALUES (?, ?)"
        " ON CONFLICT (session_id) DO UPDATE SET cloud_tx = excluded.cloud_tx",
        (session_id, cloud),
    )
    conn.execute("DELETE FROM outbox WHERE id = ?", (record_id,))


def park(conn: sqlite3.Connection, record: OutboxRecord, error: str, at: str) -> None:
    """Move a record the cloud refused for good to the dead letters (never dropped)."""
    conn.execute(
        "INSERT INTO dead_letter (record_id, station, seq, type, time, data, session_id,"
        " error, parked_at) SELECT record_id, station, seq, type, time, data, session_id, ?, ?"
        " FROM outbox WHERE id = ?",
        (error, at, record.id),
    )
    conn.execute("DELETE FROM outbox WHERE id = ?", (record.id,))


def requeue_dead_letters(conn: sqlite3.Connection, now: str) -> int:
    """Put every parked record back at the end of the outbox (`edge uplink retry
    --dead-letters`), with its id and seq unchanged."""
    moved = conn.execute(
        "INSERT INTO outbox (record_id, station, seq, type, time, data, droppable,"
        " session_id, created_at) SELECT record_id, station, seq, type, time, data, 0,"
        " session_id, ? FROM dead_letter ORDER BY id",
        (now,),
    ).rowcount
    conn.execute("DELETE FROM dead_letter")
    return moved


def dead_letters(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0])
