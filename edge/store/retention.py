"""Retention: the journal keeps meter values and events for `[store] retention_days`."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from edge.domain.units import iso_utc


def prune(conn: sqlite3.Connection, before: datetime, now: datetime) -> dict[str, int]:
    """Delete journal rows older than `before` and expired cache entries.

    Sessions stay (they are small and are the site's billing record); the outbox is
    never pruned here: what the cloud has not acknowledged is not the journal's to drop.
    """
    cutoff = iso_utc(before)
    meters = conn.execute("DELETE FROM meter_values WHERE received_at < ?", (cutoff,)).rowcount
    events = conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
    site = conn.execute("DELETE FROM site_meter_samples WHERE taken_at < ?", (cutoff,)).rowcount
    cache = conn.execute(
        "DELETE FROM auth_cache WHERE expiry IS NOT NULL AND expiry < ?", (iso_utc(now),)
    ).rowcount
    return {
        "meter_values": meters,
        "events": events,
        "site_meter_samples": site,
        "auth_cache": cache,
    }
