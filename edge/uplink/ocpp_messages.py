"""What goes up the OCPP uplink and what comes down it: outbox records as the CALLs that
carry them to the cloud, with 1.6 transaction ids mapped both ways, and the frames the
cloud sends, checked before they are trusted."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from edge.domain.station import OcppVersion
from edge.ocpp import schemas
from edge.store.outbox import OutboxRecord

Message = tuple[str, dict[str, Any]]
Lookup = Callable[[int], Awaitable[int | None]]

# Records of the local connection itself: the upstream has its own boot and connection.
SKIPPED = frozenset({"station.connected", "station.disconnected", "station.boot"})
TRANSACTION = frozenset({"transaction.started", "transaction.updated", "transaction.completed"})


async def upstream(
    record: OutboxRecord,
    data: dict[str, Any],
    version: str,
    connected_at: str,
    cloud_tx: Lookup,
) -> Message | None:
    """The CALL that carries a record up, with ids mapped; None if none does.

    `connected_at`: when this upstream connection opened (ISO time); `cloud_tx`: the
    cloud's 1.6 transaction id of a session, once its StartTransaction went up."""
    if record.type in SKIPPED:
        return None
    raw = data.get("raw")
    if not isinstance(raw, dict):
        return None
    if record.type == "station.status":
        # only what changed while connected; the state at connect went up already
        return ("StatusNotification", raw) if record.time >= connected_at else None
    action = data.get("action")
    if isinstance(action, str) and action in forwarded(version):
        # The charger's notifications (security events, firmware and log status, reports,
        # DataTransfer...) go up as it sent them; the cloud's answer is only an
        # acknowledgement, the charger was answered here.
        return action, raw
    if version == "1.6":
        return await _upstream_v16(record.type, data, raw, cloud_tx)
    if record.type in TRANSACTION:
        if record.time < connected_at:
            raw = {**raw, "offline": True}  # it happened while the cloud was away
        return "TransactionEvent", raw
    if record.type == "meter.values":
        return "MeterValues", raw
    return None


async def _upstream_v16(
    kind: str, data: dict[str, Any], raw: dict[str, Any], cloud_tx: Lookup
) -> Message | None:
    if kind == "transaction.started":
        return "StartTransaction", raw
    session = data.get("session_id")
    cloud = await cloud_tx(int(session)) if session is not None else None
    if kind == "meter.values":
        if "transactionId" in raw:
            raw = {**raw, "transactionId": cloud} if cloud is not None else _without_tx(raw)
        return "MeterValues", raw
    if kind == "transaction.completed":
        # 1.6 errata: a transaction the central system never gave an id is stopped as -1
        return "StopTransaction", {**raw, "transactionId": cloud if cloud is not None else -1}
    return None


async def local_ids(action: str, payload: dict[str, Any], local_session: Lookup) -> dict[str, Any]:
    """OCPP 1.6: the cloud names a transaction by the id it gave in its
    StartTransaction.conf; the charger knows it by the local id (RemoteStopTransaction
    §5.12, a TxProfile's transactionId in SetChargingProfile §5.16.3)."""
    if action == "RemoteStopTransaction" and isinstance(payload.get("transactionId"), int):
        local = await local_session(payload["transactionId"])
        if local is not None:
            return {**payload, "transactionId": local}
    if action == "SetChargingProfile":
        profile = payload.get("csChargingProfiles")
        if isinstance(profile, dict) and isinstance(profile.get("transactionId"), int):
            local = await local_session(profile["transactionId"])
            if local is not None:
                return {**payload, "csChargingProfiles": {**profile, "transactionId": local}}
    return payload


def frame(raw: str | bytes) -> list[Any] | None:
    """An OCPP-J frame: a JSON array of a known type with a string unique id."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(parsed, list)
        or len(parsed) < 3
        or parsed[0] not in (2, 3, 4, 5, 6)
        or not isinstance(parsed[1], str)
    ):
        return None
    return parsed


@functools.cache
def forwarded(version: str) -> frozenset[str]:
    """Actions of journaled notifications that go up as CALLs: those the version defines
    (a 2.1 SEND such as NotifyPeriodicEventStream is not a CALL and stays local)."""
    from edge.ocpp.inbound_v2 import NOTIFICATIONS as V2
    from edge.ocpp.inbound_v16 import NOTIFICATIONS as V16

    names = set(V16 if version == "1.6" else V2)
    names |= {"DataTransfer", "NotifyEVChargingNeeds", "NotifyEVChargingSchedule"}
    return frozenset(a for a in names if schemas.has_action(OcppVersion(version), a))


def _without_tx(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "transactionId"}
