"""SQLite schema and migrations, applied by `PRAGMA user_version`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from edge.errors import EdgeError

# One script per version; never edit a released one, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE stations (
        id TEXT PRIMARY KEY, ocpp_version TEXT, vendor TEXT, model TEXT, firmware TEXT,
        serial TEXT, connected INTEGER NOT NULL DEFAULT 0, last_seen TEXT, last_boot TEXT,
        boot_status TEXT
    );
    CREATE TABLE connectors (
        station TEXT NOT NULL, connector INTEGER NOT NULL, status TEXT, error_code TEXT,
        updated_at TEXT, PRIMARY KEY (station, connector)
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        station TEXT NOT NULL, connector INTEGER NOT NULL, id_tag TEXT,
        transaction_id TEXT, started_at TEXT NOT NULL, stopped_at TEXT,
        meter_start_wh REAL, meter_stop_wh REAL, last_meter_wh REAL,
        status TEXT NOT NULL, stop_reason TEXT, offline INTEGER NOT NULL DEFAULT 0,
        synced INTEGER NOT NULL DEFAULT 0, seq_last INTEGER, seq_gaps TEXT,
        notes TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        UNIQUE (station, transaction_id)
    );
    CREATE INDEX sessions_active ON sessions (station, connector, status);
    CREATE INDEX sessions_status ON sessions (status, id);
    CREATE TABLE meter_values (
        id INTEGER PRIMARY KEY, station TEXT NOT NULL, connector INTEGER,
        session_id INTEGER, timestamp TEXT, data BLOB NOT NULL, received_at TEXT NOT NULL
    );
    CREATE INDEX meter_values_session ON meter_values (session_id);
    CREATE INDEX meter_values_received ON meter_values (received_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, station TEXT, type TEXT NOT NULL, time TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX events_time ON events (time);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, station TEXT,
        seq INTEGER NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL, data BLOB NOT NULL,
        droppable INTEGER NOT NULL DEFAULT 0, session_id INTEGER, created_at TEXT NOT NULL
    );
    CREATE INDEX outbox_station ON outbox (station, id);
    CREATE TABLE outbox_seq (station TEXT PRIMARY KEY, next INTEGER NOT NULL);
    CREATE TABLE auth_tags (
        id_tag TEXT PRIMARY KEY, status TEXT NOT NULL, expiry TEXT, parent_id_tag TEXT,
        source TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE auth_cache (
        id_tag TEXT PRIMARY KEY, status TEXT NOT NULL, expiry TEXT, parent_id_tag TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
    # 2: site meters (Modbus), journaled downsampled.
    """
    CREATE TABLE site_meter_samples (
        id INTEGER PRIMARY KEY, meter TEXT NOT NULL, taken_at TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX site_meter_samples_meter ON site_meter_samples (meter, taken_at);
    CREATE INDEX site_meter_samples_time ON site_meter_samples (taken_at);
    """,
    # 3: the OCPP uplink: the cloud's 1.6 transaction id of each session, and records
    # the cloud refused for good (kept, visible, retryable).
    """
    CREATE TABLE uplink_tx (session_id INTEGER PRIMARY KEY, cloud_tx INTEGER NOT NULL);
    CREATE TABLE dead_letter (
        id INTEGER PRIMARY KEY, record_id TEXT NOT NULL, station TEXT, seq INTEGER NOT NULL,
        type TEXT NOT NULL, time TEXT NOT NULL, data BLOB NOT NULL, session_id INTEGER,
        error TEXT NOT NULL, parked_at TEXT NOT NULL
    );
    """,
    # 4: outbox ids are never reused. Without AUTOINCREMENT a new row gets max(id) + 1,
    # so once the uplink had delivered (deleted) every row, new records took ids below the
    # last one it had read, and it passed over them until its next reconnect: late and out
    # of order. Rows and their ids carry over; sqlite_sequence starts at the largest.
    """
    CREATE TABLE outbox_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, station TEXT,
        seq INTEGER NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL, data BLOB NOT NULL,
        droppable INTEGER NOT NULL DEFAULT 0, session_id INTEGER, created_at TEXT NOT NULL
    );
    INSERT INTO outbox_v4 (id, record_id, station, seq, type, time, data, droppable,
        session_id, created_at)
        SELECT id, record_id, station, seq, type, time, data, droppable, session_id,
        created_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v4 RENAME TO outbox;
    CREATE INDEX outbox_station ON outbox (station, id);
    """,
    # 5: a station's transaction id may name more than one session. OCPP 2.0.1 Part 1
    # §7.3 has chargers keep them unique, but some start counting again after a reset;
    # with UNIQUE (station, transaction_id) a reused id folded the new session into the
    # old, completed one. Rows, ids and the id sequence carry over.
    """
    CREATE TABLE sessions_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        station TEXT NOT NULL, connector INTEGER NOT NULL, id_tag TEXT,
        transaction_id TEXT, started_at TEXT NOT NULL, stopped_at TEXT,
        meter_start_wh REAL, meter_stop_wh REAL, last_meter_wh REAL,
        status TEXT NOT NULL, stop_reason TEXT, offline INTEGER NOT NULL DEFAULT 0,
        synced INTEGER NOT NULL DEFAULT 0, seq_last INTEGER, seq_gaps TEXT,
        notes TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    INSERT INTO sessions_v5 SELECT * FROM sessions;
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'sessions_v5', 0 WHERE NOT EXISTS
        (SELECT 1 FROM sqlite_sequence WHERE name = 'sessions_v5');
    UPDATE sqlite_sequence SET seq = max(seq, coalesce(
        (SELECT seq FROM sqlite_sequence WHERE name = 'sessions'), 0))
        WHERE name = 'sessions_v5';
    DROP TABLE sessions;
    ALTER TABLE sessions_v5 RENAME TO sessions;
    CREATE INDEX sessions_active ON sessions (station, connector, status);
    CREATE INDEX sessions_status ON sessions (status, id);
    CREATE INDEX sessions_transaction ON sessions (station, transaction_id);
    """,
    # 6: no index of meter values by session. Nothing reads them by session (retention
    # and room-making go by age), and with many chargers sending at once each of their
    # rows landed on a page of its own in that index: on a database of 3 million rows the
    # journal's CPU per 1.6 MeterValues went from 21 to 38 us (bench/RESULTS.md). A
    # session's values lie within its times, which meter_values_received finds.
    """
    DROP INDEX IF EXISTS meter_values_session;
    """,
)


class SchemaError(EdgeError):
    """The database file is of a schema this version does not know."""


def migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the schema to the newest version; returns the number of scripts applied."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > len(migrations):
        raise SchemaError(
            f"{path}: schema version {current} is newer than this edge knows "
            f"({len(migrations)}); upgrade edge or restore a matching backup"
        )
    for version in range(current, len(migrations)):
        # Each script and its version number commit together, so a crash halfway through
        # leaves the file at the previous version and the script is run again in full.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(migrations) - current


def statements(script: str) -> list[str]:
    """Split a script into complete SQL statements (semicolons in strings stay)."""
    # executescript() would commit on its own; we run statement by statement inside BEGIN.
    done: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                done.append(pending.strip())
            pending = ""
    return done
