"""`edge backup`: a consistent copy of the database, taken while the daemon runs or not.

Copying the file with `cp` while edge runs can give a copy that misses or tears the last
commits (they are in the WAL beside it). `VACUUM INTO` writes a consistent snapshot of
one read transaction into a new, compact file, without stopping the writer.

The source is opened read-only. With no WAL beside it (the daemon is stopped and shut
down cleanly) it is also opened as immutable, so that nothing is created beside it: a
`-wal` or `-shm` file made by root would be one the daemon's user may not open.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge.errors import EdgeError
from edge.store import damage


class BackupFailed(EdgeError):
    """The backup could not be taken or did not check out."""


def backup(source: Path, dest: Path) -> dict[str, Any]:
    """Write a checked copy of `source` to `dest` (which must not exist); what it holds."""
    if not source.is_file():
        raise BackupFailed(f"no database at {source} (see [store] path)")
    if dest.exists():
        raise BackupFailed(f"{dest} exists; choose a new file or remove it")
    immutable = not Path(f"{source}-wal").exists()
    uri = f"file:{quote(str(source))}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            conn.execute("VACUUM INTO ?", (str(dest),))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)  # what was written of it (a full disk, say) is no copy
        raise BackupFailed(f"backup of {source} to {dest} failed: {exc}") from exc
    try:
        copy = sqlite3.connect(f"file:{quote(str(dest))}?mode=ro", uri=True)
        try:
            problem = damage.check(copy)
            sessions, active = copy.execute(
                "SELECT count(*), coalesce(sum(status = 'active'), 0) FROM sessions"
            ).fetchone()
            schema = copy.execute("PRAGMA user_version").fetchone()[0]
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupFailed(f"the copy at {dest} cannot be read: {exc}") from exc
    if problem is not None:
        raise BackupFailed(
            f"the copy at {dest} is damaged ({problem}); so may be {source} (edge doctor)"
        )
    return {
        "source": str(source),
        "dest": str(dest),
        "size_bytes": dest.stat().st_size,
        "sessions": int(sessions),
        "active_sessions": int(active),
        "schema": int(schema),
    }
