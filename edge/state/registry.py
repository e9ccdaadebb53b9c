"""The live registry: which stations are connected, connector states, active sessions.

Pure: events in, JSON-able views out. The service applies each event after the store
committed it, so the registry never shows something a restart would forget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.domain.events import (
    ConnectorStatusChanged,
    Event,
    MeterReading,
    MeterValuesReceived,
    PhaseCurrents,
    Recorded,
    StationBooted,
    StationConnected,
    StationDisconnected,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
    phase_currents_a,
)
from edge.domain.session import Session
from edge.domain.station import OcppVersion, StationIdentity
from edge.domain.units import iso_utc

# Progress reports of what `edge station ID firmware|diagnostics` asked for, by the
# journal's event type: the station view keeps the latest of each.
PROGRESS = {
    "firmware.status": "firmware_status",
    "diagnostics.status": "upload_status",
    "log.status": "upload_status",
}

# How far a charger's clock may be from the controller's before edge says so. Chargers
# without a backed-up clock start at 1970 or at their build date after a power cut, and
# their session times are wrong until they take the time from BootNotification or
# Heartbeat (OCPP 1.6 §4.2, §4.6: currentTime).
CLOCK_TOLERANCE_S = 120.0
# One offset per station at most this often, and the largest of the last few kept: a
# message the charger queued while it could not send carries an older time and would
# otherwise look like a clock behind. A clock ahead shows at once (nothing queued is
# ahead); one behind only once the samples span CLOCK_BEHIND_AFTER, longer than a
# charger usually takes to send what it queued (e.g. when edge restarts), and only while
# they agree within CLOCK_STEADY_S: a clock that is wrong stays wrong by the same amount,
# while the times of a queue being sent (an OCPP 1.6 charger does not say a message was
# queued) close in on the present faster than time passes.
CLOCK_SAMPLE_EVERY = timedelta(seconds=10)
CLOCK_SAMPLES = 8
CLOCK_BEHIND_AFTER = timedelta(seconds=60)
CLOCK_STEADY_S = 30.0


@dataclass(slots=True)
class ConnectorState:
    status: str
    error_code: str | None
    updated_at: datetime


@dataclass(slots=True)
class ActiveSession:
    id: int
    station: str
    connector: int
    transaction_id: str | None
    id_tag: str | None
    started_at: datetime


@dataclass(slots=True)
class StationState:
    id: str
    configured: bool
    bidirectional: bool = False
    connected: bool = False
    ocpp_version: OcppVersion | None = None
    identity: StationIdentity = field(default_factory=StationIdentity)
    last_seen: datetime | None = None
    boot_status: str | None = None
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    limit_a: float | None = None
    limit_reason: str | None = None
    current_a: float | None = None  # what its EVs draw, summed over phases (Current.Import)
    phase_current_a: PhaseCurrents | None = None  # the same per charger phase L1..L3
    current_at: datetime | None = None  # when the charger last reported it
    limit_since: datetime | None = None
    limit_error: str | None = None  # why the last limit could not be written
    # why edge could not have the charger report its car's current (edge/ocpp/metering.py)
    metering_error: str | None = None
    # per connector: (limit A, reason) as the load balancer last wrote it
    limits: dict[int, tuple[float, str]] = field(default_factory=dict)
    # latest FirmwareStatusNotification, and Diagnostics/LogStatusNotification: {status, at}
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the charger's clock minus the controller's (s), from its messages' timestamps
    clock_offset_s: float | None = None
    # (received, offset s) of the latest samples
    clock_samples: deque[tuple[datetime, float]] = field(
        default_factory=lambda: deque(maxlen=CLOCK_SAMPLES)
    )

    @property
    def clock_off(self) -> bool:
        """Whether its clock is further from the controller's than CLOCK_TOLERANCE_S."""
        return self.clock_offset_s is not None and abs(self.clock_offset_s) > CLOCK_TOLERANCE_S

    def clock_set(self) -> None:
        """The charger was just given the time (BootNotification, Heartbeat): what its
        clock said before says nothing of it now; the next message tells."""
        self.clock_samples.clear()

    def clock_due(self, received: datetime) -> bool:
        """Whether a message received now is sampled (one per CLOCK_SAMPLE_EVERY)."""
        samples = self.clock_samples
        if samples and received < samples[-1][0]:
            # This controller's clock went back (set by NTP at last, say): what was
            # measured against it says nothing now.
            samples.clear()
        return not samples or received - samples[-1][0] >= CLOCK_SAMPLE_EVERY

    def clock_seen(self, charger_time: datetime | None, received: datetime) -> bool:
        """Note the time a charger put in a message it did not say it queued; True if
        that took its clock across the tolerance, either way."""
        if charger_time is None or not self.clock_due(received):
            return False
        was_off = self.clock_off
        self.clock_samples.append((received, (charger_time - received).total_seconds()))
        offsets = [o for _, o in self.clock_samples]
        offset = max(offsets)
        if offset >= -CLOCK_TOLERANCE_S or (
            received - self.clock_samples[0][0] >= CLOCK_BEHIND_AFTER
            and offset - min(offsets) <= CLOCK_STEADY_S
        ):
            self.clock_offset_s = round(offset)
        return self.clock_off != was_off

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md §4.6 station shape."""
        return {
            "id": self.id,
            "connected": self.connected,
            "configured": self.configured,
            "ocpp_version": self.ocpp_version.value if self.ocpp_version else None,
            "vendor": self.identity.vendor or None,
            "model": self.identity.model or None,
            "firmware": self.identity.firmware or None,
            "serial": self.identity.serial or None,
            "boot_status": self.boot_status,
            "last_seen": iso_utc(self.last_seen) if self.last_seen else None,
            "bidirectional": self.bidirectional,
            "limit_a": self.limit_a,
            "limit_reason": self.limit_reason,
            "limit_error": self.limit_error,
            "metering_error": self.metering_error,
            "clock_offset_s": self.clock_offset_s,
            "firmware_status": self.progress.get("firmware_status"),
            "upload_status": self.progress.get("upload_status"),
            "current_a": self.current_a,
            "phase_current_a": list(self.phase_current_a) if self.phase_current_a else None,
            "connectors": [
                {
                    "id": cid,
                    "status": c.status,
                    "error_code": c.error_code,
                    "limit_a": self.limits[cid][0] if cid in self.limits else None,
                    "limit_reason": self.limits[cid][1] if cid in self.limits else None,
                }
                for cid, c in sorted(self.connectors.items())
            ],
        }


class Registry:
    """Stations by id and active sessions by gateway session id."""

    def __init__(self, configured: Iterable[tuple[str, bool]] = ()) -> None:
        self.stations: dict[str, StationState] = {
            sid: StationState(sid, configured=True, bidirectional=bidi) for sid, bidi in configured
        }
        self.sessions: dict[int, ActiveSession] = {}
        # stations whose clock went beyond the tolerance or back, for the service to say
        self.clock_changes: list[str] = []

    def station(self, station_id: str) -> StationState:
        """The state of a station, created on first sight (allow_unknown_stations)."""
        st = self.stations.get(station_id)
        if st is None:
            st = self.stations[station_id] = StationState(station_id, configured=False)
        return st

    def restore(
        self,
        stations: Iterable[dict[str, Any]],
        sessions: Iterable[Session],
        progress: Iterable[tuple[str, str, str, str]] = (),
    ) -> None:
        """Load what the store remembers at start-up; every station starts disconnected.
        `progress`: (station, event type, time, status) of the latest PROGRESS events."""
        for row in stations:
            st = self.station(str(row["id"]))
            st.identity = StationIdentity(
                str(row.get("vendor") or ""),
                str(row.get("model") or ""),
                str(row.get("firmware") or ""),
                str(row.get("serial") or ""),
            )
            version = row.get("ocpp_version")
            st.ocpp_version = OcppVersion(version) if version else None
            st.boot_status = row.get("boot_status")
        for station, kind, at, status in progress:
            if kind in PROGRESS:
                self.station(station).progress[PROGRESS[kind]] = {"status": status, "at": at}
        for s in sessions:
            self.sessions[s.id] = ActiveSession(
                s.id, s.station, s.connector, s.transaction_id, s.id_tag, s.started_at
            )

    def apply(self, event: Event, recorded: Recorded) -> None:
        """Fold one committed event into the live view."""
        st = self.station(event.station)
        st.last_seen = event.at
        match event:
            case StationConnected():
                st.connected = True
                st.ocpp_version = event.ocpp_version
            case StationDisconnected():
                st.connected = False
            case StationBooted():
                st.identity = event.identity
                st.boot_status = event.status
                st.clock_set()
            case ConnectorStatusChanged():
                st.connectors[event.connector] = ConnectorState(
                    event.status, event.error_code, event.timestamp or event.at
                )
                self._clock(st, event.timestamp, event.at)
            case TransactionStarted() | TransactionUpdated() if recorded.session_id is not None:
                if recorded.active:
                    self._track(event, recorded.session_id)
                self._current(st, event.readings, event.at)
                if not event.offline:  # 2.x says which it queued
                    if isinstance(event, TransactionStarted):
                        self._clock(st, event.started_at, event.at)
                    elif st.clock_due(event.at):
                        self._clock(st, _newest(event.readings), event.at)
            case TransactionEnded() if recorded.session_id is not None:
                self.sessions.pop(recorded.session_id, None)
                if not self.active_sessions(st.id):
                    st.current_a, st.phase_current_a = 0.0, (0.0, 0.0, 0.0)
                    st.current_at = event.at
                if not event.offline:
                    self._clock(st, event.stopped_at, event.at)
            case StationNotified() if event.kind in PROGRESS:
                status = event.raw.get("status")
                if isinstance(status, str):
                    st.progress[PROGRESS[event.kind]] = {"status": status, "at": iso_utc(event.at)}
            case MeterValuesReceived():
                self._current(st, event.readings, event.at)
                if st.clock_due(event.at):
                    self._clock(st, _newest(event.readings), event.at)

    def _clock(self, st: StationState, charger_time: datetime | None, at: datetime) -> None:
        if st.clock_seen(charger_time, at):
            self.clock_changes.append(st.id)

    @staticmethod
    def _current(st: StationState, readings: tuple[MeterReading, ...], at: datetime) -> None:
        drawn = phase_currents_a(readings)
        if drawn is not None:
            st.phase_current_a = drawn
            st.current_a = sum(p for p in drawn if p is not None)
            st.current_at = at

    def _track(self, event: TransactionStarted | TransactionUpdated, session_id: int) -> None:
        if session_id in self.sessions:
            return
        connector = event.connector if event.connector is not None else 0
        started = event.started_at if isinstance(event, TransactionStarted) else event.at
        self.sessions[session_id] = ActiveSession(
            session_id, event.station, connector, event.transaction_id, event.id_tag, started
        )

    def active_sessions(self, station_id: str | None = None) -> list[ActiveSession]:
        """Active sessions, of one station or all, oldest first."""
        found = [s for s in self.sessions.values() if station_id in (None, s.station)]
        return sorted(found, key=lambda s: s.id)

    def ev_current_a(self) -> float:
        """What all EVs draw now as their chargers last reported it (A, phases summed)."""
        return sum(st.current_a or 0.0 for st in self.stations.values() if st.connected)

    def counts(self) -> dict[str, int]:
        """Known and connected stations, active sessions."""
        return {
            "known": len(self.stations),
            "connected": sum(1 for s in self.stations.values() if s.connected),
            "active_sessions": len(self.sessions),
        }


def _newest(readings: tuple[MeterReading, ...]) -> datetime | None:
    return max((r.timestamp for r in readings), default=None)


def keeps_own_time(offset_s: float | None, controller_synchronized: bool | None) -> bool:
    """Whether a charger is left its own clock rather than given the controller's: the
    controller's is not synchronized (so behind the true time, never ahead) and the
    charger's is ahead of it by more than CLOCK_TOLERANCE_S."""
    return (
        controller_synchronized is False and offset_s is not None and offset_s > CLOCK_TOLERANCE_S
    )


def clock_text(offset_s: float | None) -> str | None:
    """A charger clock's offset where it is beyond the tolerance: "clock 2 h 3 min ahead"."""
    if offset_s is None or abs(offset_s) <= CLOCK_TOLERANCE_S:
        return None
    days, left = divmod(abs(round(offset_s)), 86400)
    hours, left = divmod(left, 3600)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if left >= 60 and not days:
        parts.append(f"{left // 60} min")
    return f"clock {' '.join(parts)} {'ahead' if offset_s > 0 else 'behind'}"
