"""A damaged database file: set aside, so that the site runs on with a new one.

SQLite in WAL mode with synchronous=FULL survives power loss; what it cannot survive is
a storage device that returns wrong data, as worn SD cards do. A damaged file then
fails every write, or the daemon at start, and systemd would restart it in a loop: the
chargers would have no central system at all until someone came to the site.

So, when the file cannot be opened as a database (SQLITE_NOTADB) or reads as damaged
(SQLITE_CORRUPT) at start, it is renamed, with its WAL, to `<path>.damaged-<UTC time>`
and a new database is started; the new one remembers where the old one went, and
`edge status` and `edge doctor` say so. Nothing is deleted: `sqlite3 <kept> .recover`
may save most of what it held.

Damage found while running (a write failing with SQLITE_CORRUPT) is marked with a file
`<path>.damaged`; the next start then checks the whole file (`PRAGMA quick_check`,
which reads every page: seconds for a large file) and sets it aside if it fails.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from edge.domain.units import iso_utc
from edge.store.codes import primary_code

DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_META_KEY = "set_aside"


class Damaged(Exception):
    """The full check of a file marked damaged found a problem."""


def is_damage(exc: BaseException) -> bool:
    """Whether SQLite says the file is not a database or is damaged."""
    return isinstance(exc, Damaged) or primary_code(exc) in DAMAGED_CODES


def flag_path(db: Path) -> Path:
    return db.with_name(db.name + ".damaged")


def flag(db: Path, error: str, now: datetime) -> bool:
    """Mark the file for a full check at the next start; False if it was marked already."""
    path = flag_path(db)
    if path.exists():
        return False
    with contextlib.suppress(OSError):
        path.write_bytes(orjson.dumps({"error": error, "at": iso_utc(now)}))
    return True


def flagged(db: Path) -> bool:
    return flag_path(db).exists()


def unflag(db: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        flag_path(db).unlink()


def check(conn: sqlite3.Connection) -> str | None:
    """The first problem `PRAGMA quick_check` finds, or None if the file is sound."""
    rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    first = str(rows[0][0]) if rows else "ok"
    return None if first == "ok" else first


def set_aside(db: Path, now: datetime) -> Path:
    """Rename the database and its WAL (never one without the other) out of the way."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    kept = db.with_name(f"{db.name}.damaged-{stamp}")
    for suffix in ("-wal", ""):  # the WAL first: a database without it loses commits
        source = Path(f"{db}{suffix}")
        if source.exists():
            os.replace(source, f"{kept}{suffix}")
    with contextlib.suppress(FileNotFoundError):
        Path(f"{db}-shm").unlink()  # an index of the old WAL: never of use to a new file
    unflag(db)
    return kept


def remember(conn: sqlite3.Connection, kept: Path, error: str, now: datetime) -> None:
    """Note in the new database where the damaged one went (for status and doctor)."""
    value = orjson.dumps({"path": str(kept), "error": error, "at": iso_utc(now)}).decode()
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
        " DO UPDATE SET value = excluded.value",
        (_META_KEY, value),
    )


def remembered(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """Where the last damaged database went, if one was set aside."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_META_KEY,)).fetchone()
    if row is None:
        return None
    data: dict[str, Any] = orjson.loads(row[0])
    return data
