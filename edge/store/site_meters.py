"""Site meter readings in the journal, and as `meter.values` records for the uplink."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import orjson

from edge.domain.site_meter import SiteMeterSample
from edge.domain.units import iso_utc
from edge.store.journal import enqueue


def record_sample(
    conn: sqlite3.Connection, sample: SiteMeterSample, role: str, profile: str, now: datetime
) -> None:
    """Journal one reading and enqueue it for the cloud in the same transaction
    (DESIGN.md §2). A site meter belongs to no station: its records carry station null."""
    data = {
        "meter": sample.meter_id,
        "role": role,
        "profile": profile,
        "taken_at": iso_utc(sample.taken_at),
        "values": dict(sample.values),
    }
    conn.execute(
        "INSERT INTO site_meter_samples (meter, taken_at, data) VALUES (?, ?, ?)",
        (sample.meter_id, data["taken_at"], orjson.dumps(data)),
    )
    enqueue(conn, None, "meter.values", sample.taken_at, data, now)


def recent_samples(conn: sqlite3.Connection, meter_id: str, limit: int = 100) -> list[Any]:
    """The newest journaled readings of a meter, newest first."""
    rows = conn.execute(
        "SELECT data FROM site_meter_samples WHERE meter = ? ORDER BY taken_at DESC LIMIT ?",
        (meter_id, limit),
    ).fetchall()
    return [orjson.loads(r[0]) for r in rows]
