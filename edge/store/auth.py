"""The local authorization list and the authorization cache."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.units import iso_utc, parse_time

# Where a local-list entry came from: `[[auth.tags]]` in the config, or the HTTP API.
SOURCES = frozenset({"config", "api"})


def _entry(row: tuple[Any, ...] | None) -> AuthEntry | None:
    if row is None:
        return None
    return AuthEntry(row[0], AuthStatus(row[1]), parse_time(row[2]) if row[2] else None, row[3])


def get_auth(conn: sqlite3.Connection, id_tag: str) -> tuple[AuthEntry | None, AuthEntry | None]:
    """The local-list entry and the cache entry of a tag."""
    local = conn.execute(
        "SELECT id_tag, status, expiry, parent_id_tag FROM auth_tags WHERE id_tag = ?", (id_tag,)
    ).fetchone()
    cached = conn.execute(
        "SELECT id_tag, status, expiry, parent_id_tag FROM auth_cache WHERE id_tag = ?", (id_tag,)
    ).fetchone()
    return _entry(local), _entry(cached)


def put_tag(conn: sqlite3.Connection, entry: AuthEntry, source: str) -> None:
    """Add or replace a local-list entry; `source` is 'config' or 'api'."""
    if source not in SOURCES:
        raise ValueError(f"auth tag source must be one of {sorted(SOURCES)}, not {source!r}")
    conn.execute(
        "INSERT INTO auth_tags (id_tag, status, expiry, parent_id_tag, source, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status,"
        " expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag,"
        " source = excluded.source, updated_at = excluded.updated_at",
        (entry.id_tag, *_row(entry), source, iso_utc(datetime.now(UTC))),
    )
    _bump_version(conn)


def delete_tag(conn: sqlite3.Connection, id_tag: str) -> bool:
    """Remove a tag from the local list; False if it was not there."""
    deleted = conn.execute("DELETE FROM auth_tags WHERE id_tag = ?", (id_tag,)).rowcount > 0
    if deleted:
        _bump_version(conn)
    return deleted


def list_tags(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The local list, by tag."""
    rows = conn.execute(
        "SELECT id_tag, status, expiry, parent_id_tag, source FROM auth_tags ORDER BY id_tag"
    ).fetchall()
    keys = ("id_tag", "status", "expiry", "parent_id_tag", "source")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def cache_put(conn: sqlite3.Connection, entry: AuthEntry, now: datetime) -> None:
    """Remember a decision taken elsewhere (the cloud) until its expiry."""
    conn.execute(
        "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status,"
        " expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag,"
        " updated_at = excluded.updated_at",
        (entry.id_tag, *_row(entry), iso_utc(now)),
    )


def sync_config_tags(conn: sqlite3.Connection, entries: Iterable[AuthEntry]) -> bool:
    """Make the config's `[[auth.tags]]` the local list's config part; API entries stay.

    Returns whether anything changed: an unchanged config keeps the list version, so a
    restart does not make every charger download the same list again.
    """
    wanted = {e.id_tag: _row(e) for e in entries}
    have = {
        r[0]: tuple(r[1:])
        for r in conn.execute(
            "SELECT id_tag, status, expiry, parent_id_tag FROM auth_tags WHERE source = 'config'"
        )
    }
    if wanted == have:
        return False
    conn.execute("DELETE FROM auth_tags WHERE source = 'config'")
    stamp = iso_utc(datetime.now(UTC))
    conn.executemany(
        "INSERT INTO auth_tags (id_tag, status, expiry, parent_id_tag, source, updated_at)"
        " VALUES (?, ?, ?, ?, 'config', ?) ON CONFLICT (id_tag) DO UPDATE SET"
        " status = excluded.status, expiry = excluded.expiry,"
        " parent_id_tag = excluded.parent_id_tag, source = 'config',"
        " updated_at = excluded.updated_at",
        [(tag, *row, stamp) for tag, row in wanted.items()],
    )
    _bump_version(conn)
    return True


def _row(entry: AuthEntry) -> tuple[str, str | None, str | None]:
    """An entry's stored (status, expiry, parent_id_tag)."""
    expiry = iso_utc(entry.expiry) if entry.expiry else None
    return entry.status.value, expiry, entry.parent_id_tag


def local_list_version(conn: sqlite3.Connection) -> int:
    """The version of the local list (OCPP 1.6 §5.15 SendLocalList listVersion)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'local_list_version'").fetchone()
    return int(row[0]) if row else 0


def _bump_version(conn: sqlite3.Connection) -> None:
    # Chargers compare versions to decide whether to download the list: every change bumps.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('local_list_version', 1) ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
