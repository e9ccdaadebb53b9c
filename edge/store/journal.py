"""The journal: each domain event becomes rows, plus one outbox record for the cloud.

Runs in the writer thread only, inside the writer's transaction (DESIGN.md §2: the
outbox record commits with the journal rows, or neither does). Every event that is not
a duplicate enqueues exactly one outbox record; the writer's row counter relies on it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import structlog

from edge.domain.events import (
    ConnectorStatusChanged,
    Event,
    MeterReading,
    MeterValuesReceived,
    Recorded,
    StationBooted,
    StationConnected,
    StationDisconnected,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
    energy_import_wh,
)
from edge.domain.session import track_seq
from edge.domain.units import iso_utc as _iso_utc
from edge.domain.units import parse_time

log = structlog.get_logger("edge.store")

# The same instants are formatted several times per record (event time, batch time).
iso_utc = functools.lru_cache(maxsize=4096)(_iso_utc)

# Intermediate values: the cap on the outbox may drop these, never anything else (DESIGN.md §2).
DROPPABLE = frozenset({"meter.values", "transaction.updated"})

Json = dict[str, Any]


class JournalConnection(sqlite3.Connection):
    """The writer's connection: it also remembers each station's next outbox seq.

    Saves a SELECT per record. The cache is only right while nobody else changes
    `outbox_seq` and every rollback is followed by `forget_counters()`.

    While `deferred` is a set, `enqueue` only notes which stations' counters moved and
    `flush_counters()` writes each of them once before COMMIT: one statement per station
    and transaction instead of one per record.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox_next: dict[str, int] = {}
        self.deferred: set[str] | None = None


# The next outbox seq of a station ('' for gateway-level records).
_SET_NEXT_SEQ = (
    "INSERT INTO outbox_seq (station, next) VALUES (?, ?)"
    " ON CONFLICT (station) DO UPDATE SET next = excluded.next"
)


def forget_counters(conn: sqlite3.Connection) -> None:
    """After a rollback: the cached outbox seqs may be ahead of the database."""
    if isinstance(conn, JournalConnection):
        conn.outbox_next.clear()
        if conn.deferred is not None:
            conn.deferred.clear()


def flush_counters(conn: sqlite3.Connection) -> None:
    """Write the deferred `outbox_seq` counters (inside the transaction, before COMMIT)."""
    if isinstance(conn, JournalConnection) and conn.deferred:
        conn.executemany(_SET_NEXT_SEQ, [(key, conn.outbox_next[key]) for key in conn.deferred])
        conn.deferred.clear()


def record(conn: sqlite3.Connection, event: Event, now: datetime) -> Recorded:
    """Journal one event and enqueue it for the cloud; the caller owns the transaction."""
    match event:
        case StationConnected():
            return _connected(conn, event, now)
        case StationDisconnected():
            return _disconnected(conn, event, now)
        case StationBooted():
            return _booted(conn, event, now)
        case ConnectorStatusChanged():
            return _status_changed(conn, event, now)
        case TransactionStarted() if event.transaction_id is None:
            return _started_v16(conn, event, now)
        case TransactionStarted():
            return _started_v2(conn, event, now)
        case TransactionUpdated():
            return _updated(conn, event, now)
        case TransactionEnded():
            return _ended(conn, event, now)
        case MeterValuesReceived():
            return _meter_values(conn, event, now)
        case StationNotified():
            return _notified(conn, event, now)
    raise TypeError(f"not an event: {event!r}")


def readings_json(readings: tuple[MeterReading, ...]) -> list[Json]:
    """Readings as plain JSON (sign convention and units as received)."""
    return [
        {
            "timestamp": iso_utc(r.timestamp),
            "samples": [
                {
                    k: v
                    for k, v in (
                        ("measurand", s.measurand),
                        ("value", s.value),
                        ("unit", s.unit),
                        ("phase", s.phase),
                        ("context", s.context),
                        ("location", s.location),
                    )
                    if v is not None
                }
                for s in r.samples
            ],
        }
        for r in readings
    ]


# -- stations -------------------------------------------------------------------------


def _connected(conn: sqlite3.Connection, event: StationConnected, now: datetime) -> Recorded:
    conn.execute(
        "INSERT INTO stations (id, ocpp_version, connected, last_seen) VALUES (?, ?, 1, ?)"
        " ON CONFLICT (id) DO UPDATE SET ocpp_version = excluded.ocpp_version,"
        " connected = 1, last_seen = excluded.last_seen",
        (event.station, event.ocpp_version.value, iso_utc(event.at)),
    )
    data = {"ocpp_version": event.ocpp_version.value, "remote": event.remote}
    _event_row(conn, event.station, "station.connected", event.at, data)
    enqueue(conn, event.station, "station.connected", event.at, data, now)
    return Recorded()


def _disconnected(conn: sqlite3.Connection, event: StationDisconnected, now: datetime) -> Recorded:
    conn.execute(
        "INSERT INTO stations (id, connected, last_seen) VALUES (?, 0, ?)"
        " ON CONFLICT (id) DO UPDATE SET connected = 0, last_seen = excluded.last_seen",
        (event.station, iso_utc(event.at)),
    )
    data = {"reason": event.reason}
    _event_row(conn, event.station, "station.disconnected", event.at, data)
    enqueue(conn, event.station, "station.disconnected", event.at, data, now)
    return Recorded()


def _booted(conn: sqlite3.Connection, event: StationBooted, now: datetime) -> Recorded:
    i = event.identity
    at = iso_utc(event.at)
    conn.execute(
        "INSERT INTO stations (id, vendor, model, firmware, serial, last_seen, last_boot,"
        " boot_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " vendor = excluded.vendor, model = excluded.model, firmware = excluded.firmware,"
        " serial = excluded.serial, last_seen = excluded.last_seen,"
        " last_boot = excluded.last_boot, boot_status = excluded.boot_status",
        (event.station, i.vendor, i.model, i.firmware, i.serial, at, at, event.status),
    )
    data = {
        "vendor": i.vendor,
        "model": i.model,
        "firmware": i.firmware,
        "serial": i.serial,
        "status": event.status,
        "raw": event.raw,
    }
    _event_row(conn, event.station, "station.boot", event.at, data)
    enqueue(conn, event.station, "station.boot", event.at, data, now)
    return Recorded()


def _status_changed(
    conn: sqlite3.Connection, event: ConnectorStatusChanged, now: datetime
) -> Recorded:
    conn.execute(
        "INSERT INTO connectors (station, connector, status, error_code, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, connector) DO UPDATE SET"
        " status = excluded.status, error_code = excluded.error_code,"
        " updated_at = excluded.updated_at",
        (
            event.station,
            event.connector,
            event.status,
            event.error_code,
            iso_utc(event.timestamp or event.at),
        ),
    )
    data = {
        "connector": event.connector,
        "connector_id": event.connector_id,
        "status": event.status,
        "error_code": event.error_code,
        "timestamp": iso_utc(event.timestamp) if event.timestamp else None,
        "raw": event.raw,
    }
    enqueue(conn, event.station, "station.status", event.at, data, now)
    return Recorded()


def _notified(conn: sqlite3.Connection, event: StationNotified, now: datetime) -> Recorded:
    data = {"action": event.action, "raw": event.raw}
    _event_row(conn, event.station, event.kind, event.at, data)
    enqueue(conn, event.station, event.kind, event.at, data, now)
    return Recorded()


# -- sessions -------------------------------------------------------------------------


def _started_v16(conn: sqlite3.Connection, event: TransactionStarted, now: datetime) -> Recorded:
    started = iso_utc(event.started_at)
    # OCPP 1.6 §4.8: a StartTransaction re-sent after a lost reply must get the same id.
    row = conn.execute(
        "SELECT id FROM sessions WHERE station = ? AND connector = ? AND started_at = ?"
        " AND id_tag IS ? AND meter_start_wh IS ? AND transaction_id IS NULL",
        (event.station, event.connector, started, event.id_tag, event.meter_start_wh),
    ).fetchone()
    if row is not None:
        return Recorded(session_id=row[0], duplicate=True)
    stamp = iso_utc(now)
    cur = conn.execute(
        "INSERT INTO sessions (station, connector, id_tag, started_at, meter_start_wh,"
        " status, offline, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
        (
            event.station,
            event.connector,
            event.id_tag,
            started,
            event.meter_start_wh,
            int(event.offline),
            stamp,
            stamp,
        ),
    )
    session_id = int(cur.lastrowid or 0)
    _enqueue_started(conn, event, session_id, now)
    return Recorded(session_id=session_id)


def _started_v2(conn: sqlite3.Connection, event: TransactionStarted, now: datetime) -> Recorded:
    assert event.transaction_id is not None
    tx = _tx_session(conn, event, now, at=event.at, when=lambda: event.started_at)
    seq_last, gaps = tx.seq_last, tx.gaps
    connector = event.connector or tx.connector
    if event.seq_no is not None:
        seq_last, gaps = track_seq(seq_last, gaps, event.seq_no)
    # An Updated or Ended may have created the row (OCPP 2.0.1 E01: events can arrive
    # out of order after an outage); the start fields fill it in, the status stays.
    conn.execute(
        "UPDATE sessions SET connector = ?, id_tag = coalesce(?, id_tag), started_at = ?,"
        " meter_start_wh = coalesce(?, meter_start_wh),"
        " last_meter_wh = coalesce(last_meter_wh, ?), offline = max(offline, ?),"
        " seq_last = ?, seq_gaps = ?, updated_at = ? WHERE id = ?",
        (
            connector,
            event.id_tag,
            iso_utc(event.started_at),
            event.meter_start_wh,
            energy_import_wh(event.readings),
            int(event.offline),
            seq_last,
            _gaps_json(gaps),
            iso_utc(now),
            tx.id,
        ),
    )
    if event.readings:
        _meter_row(conn, event.station, connector, tx.id, event.readings, now)
    _enqueue_started(conn, event, tx.id, now)
    return Recorded(session_id=tx.id, active=tx.active)


def _enqueue_started(
    conn: sqlite3.Connection, event: TransactionStarted, session_id: int, now: datetime
) -> None:
    data = {
        "session_id": session_id,
        "connector": event.connector,
        "id_tag": event.id_tag,
        "transaction_id": event.transaction_id,
        "started_at": iso_utc(event.started_at),
        "meter_start_wh": event.meter_start_wh,
        "offline": event.offline,
        "seq_no": event.seq_no,
        "trigger": event.trigger,
        "readings": readings_json(event.readings),
        "raw": event.raw,
    }
    enqueue(conn, event.station, "transaction.started", event.at, data, now, session_id)


class _TxSession:
    """The parts of a 2.x session row the journal folds events into."""

    __slots__ = ("active", "connector", "created", "gaps", "id", "notes", "seq_last")

    def __init__(self, row: tuple[Any, ...], created: bool = False) -> None:
        self.id: int = row[0]
        self.connector: int = row[1]
        self.seq_last: int | None = row[2]
        self.gaps: tuple[int, ...] = tuple(orjson.loads(row[3])) if row[3] else ()
        self.notes: str | None = row[4]
        self.active: bool = row[5] == "active"
        self.created = created


def _tx_session(
    conn: sqlite3.Connection,
    event: TransactionStarted | TransactionUpdated | TransactionEnded,
    now: datetime,
    *,
    at: datetime,
    when: Callable[[], datetime | None],
    notes_if_new: str | None = None,
) -> _TxSession:
    """The session of a 2.x event's transaction id, created if this is the first we hear
    of it: started at the event's own time, or `at` if it has none. (An Updated that
    arrives before its Started, after an outage, then gives the session the charger's time
    of its first known event rather than edge's time of receipt, until the Started comes.)

    `when` gives the charger's time of the event. It is asked only where the id names a
    completed session, or more than one, or none: an event after that session's stop is
    of a new transaction that reuses the id (a charger that counts again after a reset;
    OCPP 2.0.1 Part 1 §7.3 asks for unique ids), one before it is a late, queued event of
    it."""
    station, tx_id, connector = event.station, event.transaction_id, event.connector
    assert tx_id is not None, "2.x events carry the charger's transaction id"
    rows = conn.execute(
        "SELECT id, connector, seq_last, seq_gaps, notes, status, started_at, stopped_at"
        " FROM sessions WHERE station = ? AND transaction_id = ? ORDER BY id DESC",
        (station, tx_id),
    ).fetchall()
    if len(rows) == 1 and rows[0][5] == "active":
        return _TxSession(rows[0])  # the usual case
    charger_time = when()
    if rows:
        if charger_time is None:
            return _TxSession(rows[0])
        stamp = iso_utc(charger_time)
        # the newest of the transactions that had begun by then
        row = next((r for r in rows if r[6] <= stamp), rows[-1])
        if not (row[5] == "completed" and row[7] is not None and stamp > row[7]):
            return _TxSession(row)
        log.warning("journal.transaction_id.reused", station=station, tx=tx_id, ended=row[0])
    stamp = iso_utc(now)
    started = iso_utc(charger_time or at)
    cur = conn.execute(
        "INSERT INTO sessions (station, connector, transaction_id, started_at, status, notes,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
        (station, connector or 0, tx_id, started, notes_if_new, stamp, stamp),
    )
    return _TxSession(
        (int(cur.lastrowid or 0), connector or 0, None, None, notes_if_new, "active"), True
    )


def _charger_time(raw: Json) -> datetime | None:
    """A TransactionEvent's own timestamp (schema-valid, so parseable), if it has one."""
    text = raw.get("timestamp")
    return parse_time(text) if isinstance(text, str) else None


def _updated(conn: sqlite3.Connection, event: TransactionUpdated, now: datetime) -> Recorded:
    tx = _tx_session(conn, event, now, at=event.at, when=lambda: _charger_time(event.raw))
    seq_last, gaps = track_seq(tx.seq_last, tx.gaps, event.seq_no)
    energy = energy_import_wh(event.readings)
    connector = tx.connector or event.connector or 0
    if connector != tx.connector:
        # Rare (created by an event without EVSE); kept out of the hot UPDATE because
        # setting an indexed column costs an index rewrite even when it is unchanged.
        conn.execute("UPDATE sessions SET connector = ? WHERE id = ?", (connector, tx.id))
    conn.execute(
        "UPDATE sessions SET id_tag = coalesce(?, id_tag),"
        " offline = max(offline, ?), seq_last = ?, seq_gaps = ?,"
        " last_meter_wh = coalesce(?, last_meter_wh), updated_at = ? WHERE id = ?",
        (
            event.id_tag,
            int(event.offline),
            seq_last,
            _gaps_json(gaps),
            energy,
            iso_utc(now),
            tx.id,
        ),
    )
    if event.readings:
        # The journal keeps the readings for retention_days, also after delivery.
        _meter_row(conn, event.station, connector, tx.id, event.readings, now)
    # No second copy of the readings in the outbox: `raw` carries every sampled value to
    # the cloud (DESIGN.md §4.4), `energy_wh` the normalised one.
    data = {
        "session_id": tx.id,
        "transaction_id": event.transaction_id,
        "connector": connector,
        "id_tag": event.id_tag,
        "seq_no": event.seq_no,
        "offline": event.offline,
        "trigger": event.trigger,
        "charging_state": event.charging_state,
        "energy_wh": energy,
        "raw": event.raw,
    }
    enqueue(conn, event.station, "transaction.updated", event.at, data, now, tx.id)
    return Recorded(session_id=tx.id, active=tx.active)


def _ended(conn: sqlite3.Connection, event: TransactionEnded, now: datetime) -> Recorded:
    if event.transaction_id is not None:
        session_id, notes, seq = _ended_v2_session(conn, event, now)
    else:
        session_id, notes = _ended_v16_session(conn, event, now)
        seq = None
    prior = conn.execute(
        "SELECT status, stopped_at, last_meter_wh, connector FROM sessions WHERE id = ?",
        (session_id,),
    ).fetchone()
    stopped = iso_utc(event.stopped_at)
    if prior[0] == "completed" and prior[1] == stopped:
        return Recorded(session_id=session_id, duplicate=True, notes=_notes(notes))
    connector = prior[3] or event.connector or 0
    meter_stop = event.meter_stop_wh
    if meter_stop is None:
        meter_stop = energy_import_wh(event.readings)
    if meter_stop is None:
        meter_stop = prior[2]
    conn.execute(
        "UPDATE sessions SET status = 'completed', connector = ?, stopped_at = ?,"
        " meter_stop_wh = ?,"
        " stop_reason = ?, id_tag = coalesce(id_tag, ?), offline = max(offline, ?),"
        " seq_last = coalesce(?, seq_last), seq_gaps = coalesce(?, seq_gaps),"
        " updated_at = ? WHERE id = ?",
        (
            connector,
            stopped,
            meter_stop,
            event.stop_reason,
            event.id_tag,
            int(event.offline),
            seq[0] if seq else None,
            _gaps_json(seq[1]) if seq else None,
            iso_utc(now),
            session_id,
        ),
    )
    readings = readings_json(event.readings)
    if readings:
        _meter_row(conn, event.station, connector, session_id, event.readings, now, readings)
    data = {
        "session_id": session_id,
        "transaction_id": event.transaction_id,
        "connector": connector,
        "stopped_at": stopped,
        "meter_stop_wh": meter_stop,
        "stop_reason": event.stop_reason,
        "id_tag": event.id_tag,
        "seq_no": event.seq_no,
        "offline": event.offline,
        "readings": readings,
        "notes": notes,
        "raw": event.raw,
    }
    enqueue(conn, event.station, "transaction.completed", event.at, data, now, session_id)
    return Recorded(session_id=session_id, notes=_notes(notes))


def _ended_v2_session(
    conn: sqlite3.Connection, event: TransactionEnded, now: datetime
) -> tuple[int, str | None, tuple[int | None, tuple[int, ...]] | None]:
    """The session an Ended closes (created if unknown: never drop a stop), notes, seq state."""
    assert event.transaction_id is not None
    tx = _tx_session(
        conn,
        event,
        now,
        at=event.stopped_at,
        when=lambda: event.stopped_at,
        notes_if_new=f"Ended for unknown transactionId {event.transaction_id}",
    )
    if tx.created:
        log.warning("journal.stop.unknown", station=event.station, tx=event.transaction_id)
    if event.seq_no is None:
        return tx.id, tx.notes, None
    return tx.id, tx.notes, track_seq(tx.seq_last, tx.gaps, event.seq_no)


def _ended_v16_session(
    conn: sqlite3.Connection, event: TransactionEnded, now: datetime
) -> tuple[int, str | None]:
    """The session of a 1.6 StopTransaction's transactionId (our own id) and its notes."""
    row = conn.execute(
        "SELECT id, notes FROM sessions WHERE id = ? AND station = ?",
        (event.session_id, event.station),
    ).fetchone()
    if row is not None:
        return row[0], row[1]
    if event.session_id == UNDELIVERED_ID:
        found = _stopped_without_id(conn, event)
        if found is not None:
            return found, None
    # A transactionId this gateway never issued (e.g. after the database was replaced):
    # keep the stop as a session of its own, never drop it. A re-sent one finds that row.
    notes = f"StopTransaction for unknown transactionId {event.session_id}"
    stopped = iso_utc(event.stopped_at)
    row = conn.execute(
        "SELECT id FROM sessions WHERE station = ? AND notes = ? AND stopped_at = ?",
        (event.station, notes, stopped),
    ).fetchone()
    if row is not None:
        return row[0], notes
    log.warning("journal.stop.unknown", station=event.station, tx=event.session_id)
    stamp = iso_utc(now)
    cur = conn.execute(
        "INSERT INTO sessions (station, connector, id_tag, started_at, status, notes,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
        (event.station, event.connector or 0, event.id_tag, stopped, notes, stamp, stamp),
    )
    return int(cur.lastrowid or 0), notes


# OCPP 1.6 errata §3.18: a charger that could not deliver StartTransaction.req, or never
# got our answer, sends the transaction's later messages with transactionId -1, and the
# Central System "SHALL respond as if these messages refer to a valid transactionId".
UNDELIVERED_ID = -1


def _stopped_without_id(conn: sqlite3.Connection, event: TransactionEnded) -> int | None:
    """The session a StopTransaction with transactionId -1 ends: the one it already ended
    (a re-sent stop), else the station's only active session begun before it, of its
    idTag when it names one. None where that is not one session."""
    stopped = iso_utc(event.stopped_at)
    row = conn.execute(
        "SELECT id FROM sessions WHERE station = ? AND status = 'completed' AND stopped_at = ?"
        " AND transaction_id IS NULL",
        (event.station, stopped),
    ).fetchone()
    if row is not None:
        return int(row[0])
    rows = conn.execute(
        "SELECT id FROM sessions WHERE station = ? AND status = 'active' AND started_at <= ?"
        " AND transaction_id IS NULL AND (? IS NULL OR id_tag = ?)",
        (event.station, stopped, event.id_tag, event.id_tag),
    ).fetchall()
    if len(rows) != 1:
        return None
    log.info("journal.stop.matched", station=event.station, tx=event.session_id, session=rows[0][0])
    return int(rows[0][0])


def _meter_values(conn: sqlite3.Connection, event: MeterValuesReceived, now: datetime) -> Recorded:
    energy = energy_import_wh(event.readings)
    session_id = event.session_id
    if session_id is not None:
        # 1.6 transactionId: ours only if it names a session of this station.
        cur = conn.execute(
            "UPDATE sessions SET last_meter_wh = coalesce(?, last_meter_wh)"
            " WHERE id = ? AND station = ?",
            (energy, session_id, event.station),
        )
        if cur.rowcount == 0:
            # Not one of this station's (errata §3.18's -1, or from before the database
            # was replaced): the values were measured in the connector's active session.
            session_id = None
    if session_id is None and event.connector > 0:  # connector 0 is the main meter
        row = conn.execute(
            "SELECT id FROM sessions WHERE station = ? AND connector = ? AND status = 'active'"
            " ORDER BY id DESC LIMIT 1",
            (event.station, event.connector),
        ).fetchone()
        if row is not None:
            session_id = row[0]
            if energy is not None:
                conn.execute(
                    "UPDATE sessions SET last_meter_wh = ? WHERE id = ?", (energy, session_id)
                )
    _meter_row(conn, event.station, event.connector, session_id, event.readings, now)
    # `raw` carries every sampled value to the cloud (DESIGN.md §4.4); the normalised
    # readings stay in meter_values rather than being encoded twice on this hot path.
    data = {
        "session_id": session_id,
        "connector": event.connector,
        "energy_wh": energy,
        "raw": event.raw,
    }
    enqueue(conn, event.station, "meter.values", event.at, data, now, session_id)
    return Recorded(session_id=session_id)


# -- rows -----------------------------------------------------------------------------


def _gaps_json(gaps: tuple[int, ...]) -> str:
    return orjson.dumps(gaps).decode()


def _notes(notes: str | None) -> tuple[str, ...]:
    return (notes,) if notes else ()


def _meter_row(
    conn: sqlite3.Connection,
    station: str,
    connector: int,
    session_id: int | None,
    readings: tuple[MeterReading, ...],
    now: datetime,
    encoded: list[Json] | None = None,
) -> None:
    first = iso_utc(readings[0].timestamp) if readings else None
    conn.execute(
        "INSERT INTO meter_values (station, connector, session_id, timestamp, data,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            station,
            connector,
            session_id,
            first,
            orjson.dumps(encoded if encoded is not None else readings_json(readings)),
            iso_utc(now),
        ),
    )


def _event_row(
    conn: sqlite3.Connection, station: str | None, kind: str, at: datetime, data: Json
) -> None:
    conn.execute(
        "INSERT INTO events (station, type, time, data) VALUES (?, ?, ?, ?)",
        (station, kind, iso_utc(at), orjson.dumps(data)),
    )


def enqueue(
    conn: sqlite3.Connection,
    station: str | None,
    kind: str,
    at: datetime,
    data: Json,
    now: datetime,
    session_id: int | None = None,
) -> None:
    """One outbox record with the next per-station seq (DESIGN.md §4.4: gateway-level
    events have station null and a counter of their own, kept under the key '')."""
    key = station or ""
    cache: dict[str, int] | None = getattr(conn, "outbox_next", None)
    seq = cache.get(key) if cache is not None else None
    if seq is None:
        row = conn.execute("SELECT next FROM outbox_seq WHERE station = ?", (key,)).fetchone()
        seq = row[0] if row else 1
    if cache is not None:
        cache[key] = seq + 1
    deferred: set[str] | None = getattr(conn, "deferred", None)
    if deferred is not None:
        deferred.add(key)
    else:
        conn.execute(_SET_NEXT_SEQ, (key, seq + 1))
    conn.execute(
        "INSERT INTO outbox (record_id, station, seq, type, time, data, droppable,"
        " session_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            _record_id(),
            station,
            seq,
            kind,
            iso_utc(at),
            orjson.dumps(data),
            int(kind in DROPPABLE),
            session_id,
            iso_utc(now),
        ),
    )


def _record_id() -> str:
    """A time-ordered UUID (RFC 9562 version 7) as 32 hex digits: the record's id for the
    cloud, stable across retries. Time first, so that the outbox's UNIQUE index on it grows
    at its end like the rowid does; a random (version 4) id made every insert land on a
    random page of that index, about 8 µs more per record. Built from os.urandom
    directly: uuid.uuid4() costs 4x more per record."""
    b = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    b[6] = b[6] & 0x0F | 0x70  # RFC 9562 §5.7: version 7
    b[8] = b[8] & 0x3F | 0x80  # RFC 9562 §4.1: variant 10
    return b.hex()


# -- the cap on the outbox ------------------------------------------------------------


class OutboxCap:
    """Keeps the outbox under `max_rows` with a cheap counter of the rows it holds.

    The counter only grows with records enqueued; deletions by others (the uplink's
    acknowledgements) make it an overestimate, so a real count is taken before thinning.
    """

    def __init__(self, conn: sqlite3.Connection, max_rows: int) -> None:
        self.max_rows = max_rows
        # Thin a little further than the cap, so that a full outbox is not thinned per commit.
        self.slack = max(1, max_rows // 100)
        self.rows = 0
        self._check_at = max_rows
        self.recount(conn)

    def recount(self, conn: sqlite3.Connection) -> None:
        """Take the real count (at open, after a failed commit)."""
        self.rows = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def added(self, n: int) -> bool:
        """Count `n` committed records; True when the outbox may be over its cap."""
        self.rows += n
        return self.rows > self._check_at

    def enforce(self, conn: sqlite3.Connection) -> int:
        """Thin the outbox in a transaction of its own if it is over its cap; rows dropped."""
        self.recount(conn)
        dropped = 0
        if self.rows > self.max_rows:
            conn.execute("BEGIN IMMEDIATE")
            try:
                dropped = thin(conn, self.rows - self.max_rows + self.slack)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.rows -= dropped
        # Undroppable records alone may exceed the cap: look again only after more arrived.
        self._check_at = max(self.max_rows, self.rows + self.slack)
        return dropped


def thin(conn: sqlite3.Connection, excess: int) -> int:
    """Drop up to `excess` of the oldest droppable records, keeping each session's newest.

    Starts, stops, boots and status records are never dropped (DESIGN.md §2); the number
    dropped is logged and added to `meta.outbox_thinned` for `edge uplink`.
    """
    dropped = conn.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE droppable = 1"
        " AND id NOT IN (SELECT max(id) FROM outbox WHERE droppable = 1"
        " AND session_id IS NOT NULL GROUP BY session_id) ORDER BY id LIMIT ?)",
        (excess,),
    ).rowcount
    if dropped:
        count_up(conn, "outbox_thinned", dropped)
        log.warning("outbox.thinned", dropped=dropped)
    return dropped


def count_up(conn: sqlite3.Connection, key: str, n: int) -> None:
    """Add `n` to the counter kept under `key` in `meta` (what was dropped, so far)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
        (key, n),
    )


def reset_connections(conn: sqlite3.Connection) -> int:
    """At start-up no charger is connected yet, whatever a crash left in the file."""
    return conn.execute("UPDATE stations SET connected = 0 WHERE connected = 1").rowcount
