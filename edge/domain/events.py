"""Domain events: what a charger told us, after the protocol layer has translated it.

The OCPP handlers build these, the store journals them (and enqueues them for the
cloud in the same transaction), the state registry applies them. `raw` keeps the
charger's own payload (camelCase, as received) so nothing the charger said is lost.
Times: `at` is when the gateway received it; charger timestamps stay strings as sent
inside `raw` and are parsed into the typed fields where the model needs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.domain.station import OcppVersion, StationIdentity
from edge.domain.units import to_wh

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StationConnected:
    station: str
    ocpp_version: OcppVersion
    at: datetime
    remote: str = ""


@dataclass(frozen=True, slots=True)
class StationDisconnected:
    station: str
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StationBooted:
    """BootNotification; `status` is what we answered (Accepted, Pending, Rejected)."""

    station: str
    at: datetime
    identity: StationIdentity
    status: str
    raw: Json


@dataclass(frozen=True, slots=True)
class ConnectorStatusChanged:
    """StatusNotification; `connector` is the 1.6 connectorId, or for 2.x the EVSE id
    (connectors of one EVSE are reported as the EVSE; `connector_id` keeps the 2.x one)."""

    station: str
    at: datetime
    connector: int
    status: str
    error_code: str | None
    timestamp: datetime | None
    raw: Json
    connector_id: int | None = None


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One sampledValue, normalised; value in the unit named (W, Wh, A, V, Percent, ...)."""

    measurand: str
    value: float
    unit: str
    phase: str | None = None
    context: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One meterValue element: a timestamp and its samples."""

    timestamp: datetime
    samples: tuple[MeterSample, ...]


ENERGY_IMPORT = "Energy.Active.Import.Register"


def energy_import_wh(readings: Iterable[MeterReading]) -> float | None:
    """The last whole-meter import register among readings, in Wh (None if absent).

    Only the total (no phase) at the outlet counts: a charger may also report its grid
    inlet, and mixing the two would make a session's energy wrong.
    """
    found: float | None = None
    for reading in readings:
        for s in reading.samples:
            if s.measurand == ENERGY_IMPORT and s.phase is None and s.location in (None, "Outlet"):
                found = to_wh(s.value, s.unit)
    return found


CURRENT_IMPORT = "Current.Import"


PhaseCurrents = tuple[float | None, float | None, float | None]


def phase_currents_a(readings: Iterable[MeterReading]) -> PhaseCurrents | None:
    """What the EV draws now per charger phase L1..L3 (A), from the newest reading with
    Current.Import at the outlet; None if the charger does not report it. A value without
    a phase is taken as L1 (a single-phase charger's usual report)."""
    found: PhaseCurrents | None = None
    for reading in readings:
        phases: dict[str | None, float] = {}
        for s in reading.samples:
            if s.measurand == CURRENT_IMPORT and s.location in (None, "Outlet"):
                phases[(s.phase or "")[:2] or None] = s.value
        if phases:
            if any(p in phases for p in ("L1", "L2", "L3")):
                found = (phases.get("L1"), phases.get("L2"), phases.get("L3"))
            else:
                found = (phases.get(None), None, None)
    return found


def current_import_a(readings: Iterable[MeterReading]) -> float | None:
    """What the EV draws now, in A summed over phases (None if not reported)."""
    phases = phase_currents_a(readings)
    return None if phases is None else sum(p for p in phases if p is not None)


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """1.6 StartTransaction or 2.x TransactionEvent(Started).

    `transaction_id` is None for 1.6: the store allocates the session id, which is the
    local transactionId given back to the charger. For 2.x it is the charger's id.
    """

    station: str
    at: datetime
    connector: int
    id_tag: str | None
    started_at: datetime
    meter_start_wh: float | None
    raw: Json
    transaction_id: str | None = None
    seq_no: int | None = None
    offline: bool = False
    trigger: str | None = None
    readings: tuple[MeterReading, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionUpdated:
    """2.x TransactionEvent(Updated)."""

    station: str
    at: datetime
    transaction_id: str
    seq_no: int
    offline: bool
    trigger: str
    raw: Json
    connector: int | None = None
    id_tag: str | None = None
    charging_state: str | None = None
    readings: tuple[MeterReading, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    """1.6 StopTransaction or 2.x TransactionEvent(Ended).

    1.6: `session_id` is the transactionId the charger sends (our local id).
    2.x: `transaction_id` is the charger's id.
    """

    station: str
    at: datetime
    stopped_at: datetime
    meter_stop_wh: float | None
    stop_reason: str | None
    raw: Json
    session_id: int | None = None
    transaction_id: str | None = None
    id_tag: str | None = None
    seq_no: int | None = None
    offline: bool = False
    connector: int | None = None
    readings: tuple[MeterReading, ...] = ()


@dataclass(frozen=True, slots=True)
class MeterValuesReceived:
    """MeterValues (1.6 and 2.x). 1.6 `session_id` is the transactionId if given."""

    station: str
    at: datetime
    connector: int
    readings: tuple[MeterReading, ...]
    raw: Json
    session_id: int | None = None


@dataclass(frozen=True, slots=True)
class StationNotified:
    """Any other charger message worth keeping: firmware/diagnostics/log status,
    security events, DataTransfer, NotifyEvent, NotifyReport, EV charging needs, ...

    `kind` is the event type used in the journal and on the uplink, e.g.
    `firmware.status`, `security.event`, `data.transfer`, `notify.event`.
    """

    station: str
    at: datetime
    kind: str
    action: str
    raw: Json


Event = (
    StationConnected
    | StationDisconnected
    | StationBooted
    | ConnectorStatusChanged
    | TransactionStarted
    | TransactionUpdated
    | TransactionEnded
    | MeterValuesReceived
    | StationNotified
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the store returns after committing an event.

    `session_id` is the gateway session the event belongs to (None if none);
    for a 1.6 start it is the new local transactionId. `active` says whether that
    session is still running after the event (a 2.x Started can arrive after its Ended).
    """

    session_id: int | None = None
    active: bool = True
    duplicate: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
