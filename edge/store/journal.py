"""The journal: each domain event becomes rows, plus one outbox record for the cloud.

Runs in the writer thread only, inside the writer's transaction (DESIGN.md §2: the
outbox row commits with the journal row, or neither does).
"""

from __future__ import annotations

import functools
import os
import sqlite3
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
)
from edge.domain.session import track_seq
from edge.domain.units import iso_utc as _iso_utc
from edge.domain.units import to_wh

log = structlog.get_logger("edge.store")

# The same instants are formatted several times per record (event time, batch time).
iso_utc = functools.lru_cache(maxsize=4096)(_iso_utc)

ENERGY_IMPORT = "Energy.Active.Import.Register"
DROPPABLE = frozenset({"meter.values", "transaction.updated"})


def last_energy_wh(readings: tuple[MeterReading, ...]) -> float | None:
    """The last whole-meter import register among readings, in Wh."""
    found = None
    for reading in readings:
        for s in reading.samples:
            if s.measurand == ENERGY_IMPORT and s.phase is None:
                found = to_wh(s.value, s.unit)
    return found


def readings_json(readings: tuple[MeterReading, ...]) -> list[dict[str, Any]]:
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


class Journal:
    """Writes events; keeps the per-station outbox counters (cached, reloaded on rollback)."""

    def __init__(self, conn: sqlite3.Connection, outbox_max_rows: int) -> None:
        self.conn = conn
        self.outbox_max_rows = outbox_max_rows
        self._seq: dict[str, int] = {}
        self._rows = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def forget_pending(self) -> None:
        """A rollback happened: counters may be ahead of the database; reload lazily."""
        self._seq.clear()
        self._rows = self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def committed(self) -> None:
        """After a commit: thin the outbox when it grew past its cap."""
        if self._rows > self.outbox_max_rows:
            self._thin()

    def record(self, event: Event, now: datetime) -> Recorded:
        """Journal one event; returns what the caller needs (session id, duplicate)."""
        try:
            return self._record(event, now)
        except Exception:
            self.forget_pending()
            raise

    def _record(self, event: Event, now: datetime) -> Recorded:
        match event:
            case StationConnected() | StationDisconnected():
                return self._connection(event, now)
            case StationBooted():
                return self._boot(event, now)
            case ConnectorStatusChanged():
                return self._status(event, now)
            case TransactionStarted():
                return self._started(event, now)
            case TransactionUpdated():
                return self._updated(event, now)
            case TransactionEnded():
                return self._ended(event, now)
            case MeterValuesReceived():
                return self._meter_values(event, now)
            case StationNotified():
                self._event_row(event.station, event.kind, event.at, event.raw)
                self._enqueue(
                    event.station, event.kind, event.at, {"action": event.action, "raw": event.raw}
                )
                return Recorded()
        raise TypeError(f"not an event: {event!r}")

    # -- stations -------------------------------------------------------------------

    def _connection(self, event: StationConnected | StationDisconnected, now: datetime) -> Recorded:
        at = iso_utc(event.at)
        if isinstance(event, StationConnected):
            self.conn.execute(
                "INSERT INTO stations (id, ocpp_version, connected, last_seen) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (id) DO UPDATE SET ocpp_version = excluded.ocpp_version,"
                " connected = 1, last_seen = excluded.last_seen",
                (event.station, event.ocpp_version.value, at),
            )
            kind, data = (
                "station.connected",
                {"ocpp_version": event.ocpp_version.value, "remote": event.remote},
            )
        else:
            self.conn.execute(
                "UPDATE stations SET connected = 0, last_seen = ? WHERE id = ?", (at, event.station)
            )
            kind, data = "station.disconnected", {"reason": event.reason}
        self._event_row(event.station, kind, event.at, data)
        self._enqueue(event.station, kind, event.at, data)
        return Recorded()

    def _boot(self, event: StationBooted, now: datetime) -> Recorded:
        i = event.identity
        at = iso_utc(event.at)
        self.conn.execute(
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
        self._event_row(event.station, "station.boot", event.at, data)
        self._enqueue(event.station, "station.boot", event.at, data)
        return Recorded()

    def _status(self, event: ConnectorStatusChanged, now: datetime) -> Recorded:
        when = iso_utc(event.timestamp or event.at)
        self.conn.execute(
            "INSERT INTO connectors (station, connector, status, error_code, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (station, connector) DO UPDATE SET"
            " status = excluded.status, error_code = excluded.error_code,"
            " updated_at = excluded.updated_at",
            (event.station, event.connector, event.status, event.error_code, when),
        )
        self._enqueue(
            event.station,
            "station.status",
            event.at,
            {
                "connector": event.connector,
                "connector_id": event.connector_id,
                "status": event.status,
                "error_code": event.error_code,
                "raw": event.raw,
            },
        )
        return Recorded()

    # -- sessions -------------------------------------------------------------------

    def _started(self, event: TransactionStarted, now: datetime) -> Recorded:
        started = iso_utc(event.started_at)
        stamp = iso_utc(now)
        if event.transaction_id is None:
            # OCPP 1.6: a StartTransaction re-sent after a lost reply must get the same id.
            row = self.conn.execute(
                "SELECT id FROM sessions WHERE station = ? AND connector = ? AND started_at = ?"
                " AND id_tag IS ? AND meter_start_wh IS ? AND transaction_id IS NULL",
                (event.station, event.connector, started, event.id_tag, event.meter_start_wh),
            ).fetchone()
            if row is not None:
                return Recorded(session_id=row[0], duplicate=True)
            cur = self.conn.execute(
                "INSERT INTO sessions (station, connector, id_tag, started_at, meter_start_wh,"
                " status, offline, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
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
        else:
            session_id, seq_last, gaps = self._tx_session(
                event.station, event.transaction_id, event.connector, event.started_at, now
            )
            if event.seq_no is not None:
                seq_last, gaps = track_seq(seq_last, gaps, event.seq_no)
            self.conn.execute(
                "UPDATE sessions SET connector = ?, id_tag = coalesce(?, id_tag), started_at = ?,"
                " meter_start_wh = coalesce(?, meter_start_wh), offline = max(offline, ?),"
                " seq_last = ?, seq_gaps = ?, updated_at = ? WHERE id = ?",
                (
                    event.connector,
                    event.id_tag,
                    started,
                    event.meter_start_wh,
                    int(event.offline),
                    seq_last,
                    orjson.dumps(gaps).decode(),
                    stamp,
                    session_id,
                ),
            )
        self._enqueue(
            event.station,
            "transaction.started",
            event.at,
            {
                "session_id": session_id,
                "connector": event.connector,
                "id_tag": event.id_tag,
                "transaction_id": event.transaction_id,
                "started_at": started,
                "meter_start_wh": event.meter_start_wh,
                "offline": event.offline,
                "seq_no": event.seq_no,
                "raw": event.raw,
            },
            session_id=session_id,
        )
        return Recorded(session_id=session_id)

    def _tx_session(
        self, station: str, tx_id: str, connector: int | None, at: datetime, now: datetime
    ) -> tuple[int, int | None, tuple[int, ...]]:
        """The session of a 2.x transaction id, created if this is the first we hear of it."""
        row = self.conn.execute(
            "SELECT id, seq_last, seq_gaps FROM sessions WHERE station = ? AND transaction_id = ?",
            (station, tx_id),
        ).fetchone()
        if row is not None:
            return row[0], row[1], tuple(orjson.loads(row[2])) if row[2] else ()
        stamp = iso_utc(now)
        cur = self.conn.execute(
            "INSERT INTO sessions (station, connector, transaction_id, started_at, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?)",
            (station, connector or 0, tx_id, iso_utc(at), stamp, stamp),
        )
        return int(cur.lastrowid or 0), None, ()

    def _updated(self, event: TransactionUpdated, now: datetime) -> Recorded:
        session_id, seq_last, gaps = self._tx_session(
            event.station, event.transaction_id, event.connector, event.at, now
        )
        seq_last, gaps = track_seq(seq_last, gaps, event.seq_no)
        energy = last_energy_wh(event.readings)
        self.conn.execute(
            "UPDATE sessions SET id_tag = coalesce(id_tag, ?), offline = max(offline, ?),"
            " seq_last = ?, seq_gaps = ?, last_meter_wh = coalesce(?, last_meter_wh),"
            " updated_at = ? WHERE id = ?",
            (
                event.id_tag,
                int(event.offline),
                seq_last,
                orjson.dumps(gaps).decode(),
                energy,
                iso_utc(now),
                session_id,
            ),
        )
        self._enqueue(
            event.station,
            "transaction.updated",
            event.at,
            {
                "session_id": session_id,
                "transaction_id": event.transaction_id,
                "seq_no": event.seq_no,
                "offline": event.offline,
                "trigger": event.trigger,
                "charging_state": event.charging_state,
                "raw": event.raw,
            },
            session_id=session_id,
        )
        return Recorded(session_id=session_id)

    def _ended(self, event: TransactionEnded, now: datetime) -> Recorded:
        stamp = iso_utc(now)
        stopped = iso_utc(event.stopped_at)
        notes = None
        if event.transaction_id is not None:
            session_id, seq_last, gaps = self._tx_session(
                event.station, event.transaction_id, event.connector, event.stopped_at, now
            )
            if event.seq_no is not None:
                seq_last, gaps = track_seq(seq_last, gaps, event.seq_no)
        else:
            seq_last, gaps = None, ()
            row = self.conn.execute(
                "SELECT id FROM sessions WHERE id = ? AND station = ?",
                (event.session_id, event.station),
            ).fetchone()
            if row is None:
                # A transactionId this gateway never issued: keep the stop, never drop it.
                notes = f"StopTransaction for unknown transactionId {event.session_id}"
                log.warning(
                    "journal.stop.unknown", station=event.station, transaction_id=event.session_id
                )
                cur = self.conn.execute(
                    "INSERT INTO sessions (station, connector, id_tag, started_at, status,"
                    " notes, created_at, updated_at) VALUES (?, 0, ?, ?, 'active', ?, ?, ?)",
                    (event.station, event.id_tag, stopped, notes, stamp, stamp),
                )
                session_id = int(cur.lastrowid or 0)
            else:
                session_id = row[0]
        prior = self.conn.execute(
            "SELECT status, stopped_at, last_meter_wh FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if prior[0] == "completed" and prior[1] == stopped:
            return Recorded(session_id=session_id, duplicate=True)
        meter_stop = event.meter_stop_wh
        if meter_stop is None:
            meter_stop = last_energy_wh(event.readings) or prior[2]
        self.conn.execute(
            "UPDATE sessions SET status = 'completed', stopped_at = ?, meter_stop_wh = ?,"
            " stop_reason = ?, id_tag = coalesce(id_tag, ?), offline = max(offline, ?),"
            " seq_last = coalesce(?, seq_last), seq_gaps = coalesce(?, seq_gaps),"
            " updated_at = ? WHERE id = ?",
            (
                stopped,
                meter_stop,
                event.stop_reason,
                event.id_tag,
                int(event.offline),
                seq_last,
                orjson.dumps(gaps).decode() if event.transaction_id else None,
                stamp,
                session_id,
            ),
        )
        if event.readings:
            self._meter_row(event.station, event.connector or 0, session_id, event.readings, now)
        self._enqueue(
            event.station,
            "transaction.completed",
            event.at,
            {
                "session_id": session_id,
                "transaction_id": event.transaction_id,
                "stopped_at": stopped,
                "meter_stop_wh": meter_stop,
                "stop_reason": event.stop_reason,
                "id_tag": event.id_tag,
                "seq_no": event.seq_no,
                "offline": event.offline,
                "readings": readings_json(event.readings),
                "raw": event.raw,
                "notes": notes,
            },
            session_id=session_id,
        )
        return Recorded(session_id=session_id)

    def _meter_values(self, event: MeterValuesReceived, now: datetime) -> Recorded:
        session_id = event.session_id
        if session_id is None and event.connector > 0:
            row = self.conn.execute(
                "SELECT id FROM sessions WHERE station = ? AND connector = ? AND status = 'active'"
                " ORDER BY id DESC LIMIT 1",
                (event.station, event.connector),
            ).fetchone()
            session_id = row[0] if row else None
        self._meter_row(event.station, event.connector, session_id, event.readings, now)
        energy = last_energy_wh(event.readings)
        if session_id is not None and energy is not None:
            self.conn.execute(
                "UPDATE sessions SET last_meter_wh = ? WHERE id = ? AND station = ?",
                (energy, session_id, event.station),
            )
        self._enqueue(
            event.station,
            "meter.values",
            event.at,
            {
                "session_id": session_id,
                "connector": event.connector,
                "raw": event.raw,
            },
            session_id=session_id,
        )
        return Recorded(session_id=session_id)

    # -- rows -----------------------------------------------------------------------

    def _meter_row(
        self,
        station: str,
        connector: int,
        session_id: int | None,
        readings: tuple[MeterReading, ...],
        now: datetime,
    ) -> None:
        first = iso_utc(readings[0].timestamp) if readings else None
        self.conn.execute(
            "INSERT INTO meter_values (station, connector, session_id, timestamp, data,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                station,
                connector,
                session_id,
                first,
                orjson.dumps(readings_json(readings)),
                iso_utc(now),
            ),
        )

    def _event_row(self, station: str | None, kind: str, at: datetime, data: Any) -> None:
        self.conn.execute(
            "INSERT INTO events (station, type, time, data) VALUES (?, ?, ?, ?)",
            (station, kind, iso_utc(at), orjson.dumps(data)),
        )

    def _enqueue(
        self,
        station: str | None,
        kind: str,
        at: datetime,
        data: dict[str, Any],
        session_id: int | None = None,
    ) -> None:
        key = station or ""
        seq = self._seq.get(key)
        if seq is None:
            row = self.conn.execute(
                "SELECT next FROM outbox_seq WHERE station = ?", (key,)
            ).fetchone()
            seq = row[0] if row else 1
        self._seq[key] = seq + 1
        self.conn.execute(
            "INSERT INTO outbox_seq (station, next) VALUES (?, ?)"
            " ON CONFLICT (station) DO UPDATE SET next = excluded.next",
            (key, seq + 1),
        )
        self.conn.execute(
            "INSERT INTO outbox (record_id, station, seq, type, time, data, droppable,"
            " session_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                os.urandom(16).hex(),  # stable record id, as random as uuid4
                station,
                seq,
                kind,
                iso_utc(at),
                orjson.dumps(data),
                int(kind in DROPPABLE),
                session_id,
                iso_utc(at),
            ),
        )
        self._rows += 1

    def _thin(self) -> None:
        """Over the cap: drop the oldest intermediate meter values, never a start or stop,
        and keep the newest droppable record of each session (DESIGN.md §2)."""
        self._rows = self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        excess = self._rows - self.outbox_max_rows
        if excess <= 0:
            return
        excess += max(1, self.outbox_max_rows // 100)  # some room, so we don't thin per commit
        self.conn.execute("BEGIN")
        cur = self.conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox o WHERE droppable = 1"
            " AND (session_id IS NULL OR id < (SELECT max(id) FROM outbox l WHERE l.droppable = 1"
            " AND l.session_id = o.session_id)) ORDER BY id LIMIT ?)",
            (excess,),
        )
        dropped = cur.rowcount
        self._rows -= dropped
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('outbox_thinned', ?) ON CONFLICT (key)"
            " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            (dropped,),
        )
        self.conn.execute("COMMIT")
        log.warning("outbox.thinned", dropped=dropped, cap=self.outbox_max_rows)
