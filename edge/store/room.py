"""A full disk (DESIGN.md §2): what the store drops to make room, oldest intermediate
meter values first and never a session's start or stop, and the reserve that lets it.

On a full filesystem SQLite in WAL mode cannot even delete: a DELETE needs room in the
WAL, and the WAL is written from its start again only after a checkpoint has copied it
into the database file, which then grows. So the store keeps a reserve file of
`[store] reserve_mb` beside the database. When a commit fails for want of room, the
reserve goes, the WAL is checkpointed, and the oldest droppable rows are deleted: their
pages are reused by what comes next, and the file stops growing. The reserve is taken
again once the disk has twice its size free.

What is dropped, until the file has ROOM_PAGES free, each step only when the one before
has nothing left to drop:
1. the journal's copy of the chargers' meter values (`meter_values`), oldest first:
   the cloud still gets them from the outbox, the sessions keep their energy;
2. the site meters' samples (`site_meter_samples`), oldest first;
3. the outbox's intermediate meter values the cloud has not yet taken, oldest first and
   keeping each session's newest (`journal.thin`, counted in `edge uplink`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.domain.units import iso_utc
from edge.store import journal
from edge.store.codes import primary_code

# Each time room is made, rows are deleted (this many at a time) until the file has this
# many free pages (1 MiB of 4 KiB pages) for what comes next.
ROOM_PAGES = 256
ROOM_ROWS = 500
# Below this much free space (or twice the reserve) `edge doctor` warns; with no reserve
# configured, a disk that was full counts as full until it has this much free again.
LOW_SPACE_BYTES = 64 * 1024 * 1024

# The journal's tables dropped from first, in this order; `meta` counts each under
# "room_dropped_<table>".
LOCAL_TABLES = ("meter_values", "site_meter_samples")
_LOCAL = tuple((table, f"room_dropped_{table}") for table in LOCAL_TABLES)


def is_full(exc: BaseException) -> bool:
    """Whether SQLite failed for want of room (SQLITE_FULL: the disk, or the file's limit)."""
    return primary_code(exc) == sqlite3.SQLITE_FULL


def free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged writer on the filesystem holding `path`."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class Reserve:
    """A file of `size` allocated bytes beside the database, given back when it is full."""

    def __init__(self, db: Path, size: int) -> None:
        self.path = db.with_name(db.name + ".reserve")
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.size > 0 and self.path.stat().st_size >= self.size
        except OSError:
            return False

    def hold(self) -> bool:
        """Allocate the reserve if it is not there and the disk has twice its size free."""
        if self.size <= 0 or self.held:
            return self.held
        free = free_bytes(self.path)
        if free is None or free < 2 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                # Real blocks, not a sparse file: a hole gives nothing back.
                os.posix_fallocate(fd, 0, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                self.path.unlink()
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve; True if there was one to give back."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


@dataclass
class DiskState:
    """What the store tells status, metrics and `edge doctor` about its disk and its file:
    room, the reserve, what was dropped, failures, a damaged file set aside."""

    path: Path
    reserve: Reserve
    full_at: datetime | None = None  # the last commit that failed for want of room
    full: bool = False  # since then the disk has not had room again (`room_again`)
    # the journal's rows dropped to make room since the file began, by table
    dropped: dict[str, int] = field(default_factory=dict)
    # where a damaged database was set aside, when and why (edge/store/damage.py)
    set_aside: dict[str, Any] | None = None
    # the store's last failure to commit, while it lasts: {"error", "since"}
    failing: dict[str, Any] | None = None

    def room_again(self) -> bool:
        """Whether a disk that was full has room again: the reserve is back, or, with
        none configured, LOW_SPACE_BYTES are free."""
        if self.reserve.size:
            return self.reserve.held
        free = free_bytes(self.path)
        return free is not None and free >= LOW_SPACE_BYTES

    def to_json(self) -> dict[str, Any]:
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return {
            "path": str(self.path),
            "size_bytes": size,
            "free_bytes": free_bytes(self.path),
            "reserve_bytes": self.reserve.size,
            "reserve_held": self.reserve.held,
            "disk_full": self.full,
            "disk_full_at": iso_utc(self.full_at) if self.full_at else None,
            "dropped": dict(self.dropped),
            "failing": self.failing,
            # shown while the damaged file is still there to be recovered
            "set_aside": (
                {**self.set_aside, "exists": os.path.exists(self.set_aside["path"])}
                if self.set_aside
                else None
            ),
        }


def load_dropped(conn: sqlite3.Connection) -> dict[str, int]:
    """The journal's rows dropped to make room so far, by table (kept in `meta`; what the
    outbox dropped is counted with its cap's thinning, shown by `edge uplink`)."""
    keys = {meta: table for table, meta in _LOCAL}
    rows = conn.execute(
        f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(keys))})",
        tuple(keys),
    ).fetchall()
    return {keys[k]: int(v) for k, v in rows}


def make_room(
    conn: sqlite3.Connection, pages: int = ROOM_PAGES, rows: int = ROOM_ROWS
) -> dict[str, int]:
    """Delete the oldest droppable rows, `rows` at a time in the order above, until the
    file has `pages` free pages for what comes next; in a transaction of its own.
    Returns the rows dropped by table ("outbox" for the cloud's intermediate values)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        dropped: dict[str, int] = {}

        def short() -> bool:
            return int(conn.execute("PRAGMA freelist_count").fetchone()[0]) < pages

        for table, meta in _LOCAL:
            while short():
                n = conn.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?)",
                    (rows,),
                ).rowcount
                if not n:
                    break
                journal.count_up(conn, meta, n)
                dropped[table] = dropped.get(table, 0) + n
        while short():
            n = journal.thin(conn, rows)
            if not n:
                break
            dropped["outbox"] = dropped.get("outbox", 0) + n
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return dropped
