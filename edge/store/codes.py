"""SQLite's result codes on the errors Python's sqlite3 raises."""

from __future__ import annotations

import sqlite3


def primary_code(exc: object) -> int | None:
    """The primary result code of an sqlite3 error (an extended code carries it in its low
    byte: SQLITE_CORRUPT_INDEX is SQLITE_CORRUPT), or None for anything else."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(exc, sqlite3.Error) and isinstance(code, int) else None
