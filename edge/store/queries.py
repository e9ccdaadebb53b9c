"""Read models over the journal: plain functions of a connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from edge.domain.session import Session
from edge.domain.units import iso_utc, parse_time

SESSION_COLUMNS = (
    "id, station, connector, id_tag, started_at, stopped_at, meter_start_wh, meter_stop_wh,"
    " status, stop_reason, offline, synced, transaction_id, seq_last, seq_gaps, last_meter_wh"
)


def session_from_row(row: tuple[Any, ...]) -> Session:
    """A `Session` from a row of SESSION_COLUMNS."""
    return Session(
        id=row[0],
        station=row[1],
        connector=row[2],
        id_tag=row[3],
        started_at=parse_time(row[4]),
        stopped_at=parse_time(row[5]) if row[5] else None,
        meter_start_wh=row[6],
        meter_stop_wh=row[7],
        status=row[8],
        stop_reason=row[9],
        offline=bool(row[10]),
        synced=bool(row[11]),
        transaction_id=row[12],
        seq_last=row[13],
        seq_gaps=tuple(orjson.loads(row[14])) if row[14] else (),
        last_meter_wh=row[15],
    )


def list_sessions(
    conn: sqlite3.Connection,
    *,
    active: bool | None,
    limit: int,
    station: str | None = None,
    id_tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Session]:
    """Sessions, newest first, optionally only active/completed ones, of one station or
    idTag, begun at or after `since` and before `until`."""
    where, args = [], []
    if active is not None:
        where.append("status = ?")
        args.append("active" if active else "completed")
    if station is not None:
        where.append("station = ?")
        args.append(station)
    if id_tag is not None:
        where.append("id_tag = ?")
        args.append(id_tag)
    if since is not None:  # stored as iso_utc: the text orders as the time does
        where.append("started_at >= ?")
        args.append(iso_utc(since))
    if until is not None:
        where.append("started_at < ?")
        args.append(iso_utc(until))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions{clause} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [session_from_row(r) for r in rows]


def get_session(conn: sqlite3.Connection, session_id: int) -> Session | None:
    """One session by the gateway's id."""
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    return session_from_row(row) if row else None


def active_sessions(conn: sqlite3.Connection) -> list[Session]:
    """Every session not yet completed."""
    rows = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'active' ORDER BY id"
    ).fetchall()
    return [session_from_row(r) for r in rows]


def list_stations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every station the journal has seen, as row dicts."""
    cur = conn.execute(
        "SELECT id, ocpp_version, vendor, model, firmware, serial, connected, last_seen,"
        " last_boot, boot_status FROM stations ORDER BY id"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def latest_progress(
    conn: sqlite3.Connection, kinds: Iterable[str]
) -> list[tuple[str, str, str, str]]:
    """(station, event type, time, status) of each station's latest event of each of
    `kinds` (firmware, diagnostics and log upload status) still in the journal."""
    kinds = tuple(kinds)
    marks = ", ".join("?" for _ in kinds)
    rows = conn.execute(
        f"SELECT station, type, time, data FROM events WHERE id IN (SELECT max(id) FROM events"
        f" WHERE type IN ({marks}) AND station IS NOT NULL GROUP BY station, type)",
        kinds,
    ).fetchall()
    found = []
    for station, kind, at, data in rows:
        status = orjson.loads(data).get("raw", {}).get("status")
        if isinstance(status, str):
            found.append((station, kind, at, status))
    return found


def connector_statuses(conn: sqlite3.Connection) -> dict[str, dict[int, str]]:
    """Last known status of every connector, by station."""
    out: dict[str, dict[int, str]] = {}
    for station, connector, status in conn.execute(
        "SELECT station, connector, status FROM connectors"
    ):
        out.setdefault(station, {})[connector] = status
    return out


def outbox_stats(conn: sqlite3.Connection, now: datetime) -> dict[str, Any]:
    """Backlog size, age of the oldest undelivered record, and how many were thinned."""
    (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    # Records are numbered in commit order: the lowest id is the oldest one waiting.
    oldest = conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
    thinned = conn.execute("SELECT value FROM meta WHERE key = 'outbox_thinned'").fetchone()
    (dead,) = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
    age = round((now - parse_time(oldest[0])).total_seconds(), 1) if oldest else None
    return {
        "backlog": count,
        "oldest_age_s": age,
        "thinned": int(thinned[0]) if thinned else 0,
        "dead_letters": dead,
    }
