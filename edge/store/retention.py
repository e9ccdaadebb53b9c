"""Retention: the journal keeps meter values and events for `[store] retention_days`."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from edge.domain.units import iso_utc

# (table, column of its time): the journal's rows that retention deletes
_JOURNAL = (
    ("meter_values", "received_at"),
    ("events", "time"),
    ("site_meter_samples", "taken_at"),
)


def prune(
    conn: sqlite3.Connection, before: datetime, now: datetime, limit: int | None = None
) -> dict[str, int]:
    """Delete journal rows older than `before` and expired cache entries; with `limit`, at
    most that many rows of each table, so that one transaction stays short (the caller
    repeats while a table gave `limit`).

    Sessions stay (they are small and are the site's billing record); the outbox is
    never pruned here: what the cloud has not acknowledged is not the journal's to drop.
    """
    cutoff = iso_utc(before)
    pruned: dict[str, int] = {}
    for table, column in _JOURNAL:
        args: tuple[object, ...] = (cutoff,)
        sql = f"DELETE FROM {table} WHERE {column} < ?"
        if limit is not None:
            picked = f"SELECT id FROM {table} WHERE {column} < ? LIMIT ?"
            sql = f"DELETE FROM {table} WHERE id IN ({picked})"
            args = (cutoff, limit)
        pruned[table] = conn.execute(sql, args).rowcount
    pruned["auth_cache"] = conn.execute(
        "DELETE FROM auth_cache WHERE expiry IS NOT NULL AND expiry < ?", (iso_utc(now),)
    ).rowcount
    return pruned
