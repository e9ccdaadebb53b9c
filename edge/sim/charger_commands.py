"""What a simulated charger does with the central system's CALLs.

Each handler answers at once and may return a follow-up, run after the answer is sent
(a remote start authorizes and starts, a reset stops the sessions and boots again).
A charger model's limits live here too: which charging profiles it takes (OCPP 1.6
§3.13, 2.0.1 K01) and which rate units and how many periods.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.sim.profiles import MAX_PURPOSES, VOLTS, Profile, parse_profile
from edge.sim.settings import MAX_STACK_LEVEL, Setting
from edge.sim.wire import Answer, Payload, now_iso

if TYPE_CHECKING:
    from edge.sim.charger import Connector, SimCharger

STEP_S = 0.05  # pause between the steps of a simulated firmware update or upload


def respond(ch: SimCharger, action: str, payload: Payload) -> Answer | None:
    """Answer a central system's CALL; None means CALLERROR NotImplemented (OCPP-J 1.6 §4.2.3)."""
    ch.received.append((action, payload))
    ch.say(f"{ch.cfg.id}: {action} from the central system")
    handler = (_V2_HANDLERS if ch.v2 else _V16_HANDLERS).get(action)
    return None if handler is None else handler(ch, payload)


def _free_connector(ch: SimCharger, wanted: int | None) -> Connector | None:
    if wanted is not None:
        c = ch.connectors.get(wanted)
        return c if c and c.transaction is None and c.operative else None
    return next((c for c in ch.connectors.values() if c.transaction is None and c.operative), None)


def _find_tx(ch: SimCharger, tx: Any) -> Connector | None:
    return next((c for c in ch.connectors.values() if c.transaction == str(tx)), None)


def _remote_start_transaction(ch: SimCharger, p: Payload) -> Answer:
    c = _free_connector(ch, p.get("connectorId"))
    if c is None:
        return {"status": "Rejected"}, None
    return {"status": "Accepted"}, lambda: _remote_start(
        ch, c.id, p["idTag"], None, p.get("chargingProfile")
    )


def _request_start_transaction(ch: SimCharger, p: Payload) -> Answer:
    c = _free_connector(ch, p.get("evseId"))
    if c is None:
        return {"status": "Rejected"}, None
    return {"status": "Accepted"}, lambda: _remote_start(
        ch, c.id, p["idToken"]["idToken"], p["remoteStartId"], p.get("chargingProfile")
    )


async def _remote_start(
    ch: SimCharger,
    connector: int,
    id_tag: str,
    remote_start_id: int | None,
    profile: Payload | None,
) -> None:
    tx = await ch.start(connector, id_tag, remote_start_id=remote_start_id, remote=True)
    if tx is not None and profile is not None:
        # OCPP 1.6 §5.11: a TxProfile sent with the remote start applies to this session.
        c = ch.connectors[connector]
        ch.settle(c)
        _install(ch, parse_profile(profile, connector, ch.cfg.phases))
        await ch.rate_changed(c)


def _remote_stop_transaction(ch: SimCharger, p: Payload) -> Answer:
    return _remote_stop(ch, p["transactionId"])


def _request_stop_transaction(ch: SimCharger, p: Payload) -> Answer:
    return _remote_stop(ch, p["transactionId"])


def _remote_stop(ch: SimCharger, tx: Any) -> Answer:
    c = _find_tx(ch, tx)
    if c is None:
        return {"status": "Rejected"}, None
    return {"status": "Accepted"}, lambda: ch.stop(c.id, "Remote")


def _reset(ch: SimCharger, p: Payload) -> Answer:
    busy = any(c.transaction is not None for c in ch.connectors.values())
    if ch.v2 and p["type"] == "OnIdle" and busy:
        ch.reset_when_idle()  # OCPP 2.0.1 B12: once the sessions end
        return {"status": "Scheduled"}, None
    reason = "ImmediateReset" if ch.v2 else f"{p['type']}Reset"
    return {"status": "Accepted"}, lambda: ch.reset(reason)


def _unlock_connector(ch: SimCharger, p: Payload) -> Answer:
    connector = p["evseId"] if ch.v2 else p["connectorId"]
    c = ch.connectors.get(connector)
    if c is None:
        return {"status": "UnknownConnector" if ch.v2 else "NotSupported"}, None
    if c.transaction is not None:
        if ch.v2:  # OCPP 2.0.1 F05.FR.02
            return {"status": "OngoingAuthorizedTransaction"}, None
        # OCPP 1.6 §5.18: unlocking stops the session first.
        return {"status": "Unlocked"}, lambda: ch.stop(c.id, "UnlockCommand")
    return {"status": "Unlocked"}, None


def _change_availability(ch: SimCharger, p: Payload) -> Answer:
    if ch.v2:
        operative = p["operationalStatus"] == "Operative"
        target = (p.get("evse") or {}).get("id", 0)
    else:
        operative, target = p["type"] == "Operative", p["connectorId"]
    if target and target not in ch.connectors:
        return {"status": "Rejected"}, None
    targets = [ch.connectors[target]] if target else list(ch.connectors.values())
    scheduled = False
    for c in targets:
        ch.settle(c)
        if not operative and c.transaction is not None:
            c.inoperative_later, scheduled = True, True  # OCPP 1.6 §5.2: after the session
        else:
            c.operative, c.inoperative_later = operative, False

    async def report() -> None:
        for c in targets:
            await ch.report(c)

    return {"status": "Scheduled" if scheduled else "Accepted"}, report


def _trigger_message(ch: SimCharger, p: Payload) -> Answer:
    message = p["requestedMessage"]
    wanted = (p.get("evse") or {}).get("id") if ch.v2 else p.get("connectorId")
    if wanted and wanted not in ch.connectors:
        return {"status": "Rejected"}, None
    targets = [ch.connectors[wanted]] if wanted else list(ch.connectors.values())
    action = _triggered(ch, message, targets)
    if action is None:
        return {"status": "NotImplemented"}, None
    return {"status": "Accepted"}, action


def _triggered(ch: SimCharger, message: str, targets: list[Connector]) -> Callable[[], Any] | None:
    """The follow-up for a TriggerMessage (OCPP 1.6 §5.17, 2.0.1 F06)."""
    idle = "Idle"
    if message == "BootNotification":
        return lambda: ch.send_boot("Triggered")
    if message == "Heartbeat":
        return ch.heartbeat
    if message == "StatusNotification":
        return lambda: _each(targets, lambda c: ch.set_status(c.id, c.status))
    if message == "MeterValues":
        return lambda: _each(targets, functools.partial(_triggered_meter, ch))
    if message == "TransactionEvent" and ch.v2:
        busy = [c for c in targets if c.transaction is not None]
        return lambda: _each(busy, lambda c: ch.tx_event(c, "Updated", "Trigger"))
    if message == "FirmwareStatusNotification":
        return lambda: ch.call("FirmwareStatusNotification", {"status": idle})
    if message == "DiagnosticsStatusNotification" and not ch.v2:
        return lambda: ch.call("DiagnosticsStatusNotification", {"status": idle})
    if message == "LogStatusNotification" and ch.v2:
        return lambda: ch.call("LogStatusNotification", {"status": idle})
    return None


async def _each(targets: list[Connector], send: Callable[[Connector], Any]) -> None:
    for c in targets:
        await send(c)


async def _triggered_meter(ch: SimCharger, c: Connector) -> None:
    ch.settle(c)
    meter = ch.meter_value(c, "Trigger")
    if ch.v2:
        await ch.call("MeterValues", {"evseId": c.id, "meterValue": [meter]})
        return
    payload: Payload = {"connectorId": c.id, "meterValue": [meter]}
    if c.transaction is not None:
        payload["transactionId"] = int(c.transaction)
    await ch.call("MeterValues", payload)


def _get_configuration(ch: SimCharger, p: Payload) -> Answer:
    keys = p.get("key") or list(ch.settings)
    known = [
        {"key": k, "readonly": ch.settings[k].readonly, "value": ch.settings[k].value}
        for k in keys
        if k in ch.settings
    ]
    unknown = [k for k in keys if k not in ch.settings]
    return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}, None


def _change_configuration(ch: SimCharger, p: Payload) -> Answer:
    setting = ch.settings.get(p["key"])
    if setting is None:
        return {"status": "NotSupported"}, None
    if setting.readonly or not setting.accepts(p["value"]):
        return {"status": "Rejected"}, None
    if p["key"] == "MeterValuesSampledData" and _too_long(ch, p["value"]):
        return {"status": "Rejected"}, None
    setting.value = p["value"]
    ch.retime()
    return {"status": "Accepted"}, None


def _too_long(ch: SimCharger, measurands: str) -> bool:
    """OCPP 1.6 §9.1: MeterValuesSampledData holds at most MeterValuesSampledDataMaxLength."""
    limit = ch.settings.get("MeterValuesSampledDataMaxLength")
    return limit is not None and len(measurands.split(",")) > int(limit.value)


def _variable(ch: SimCharger, d: Payload) -> tuple[str, Setting | None]:
    """(attributeStatus if unknown, setting) for a 2.x component/variable pair."""
    component, variable = d["component"]["name"], d["variable"]["name"]
    if not any(k.startswith(f"{component}.") for k in ch.settings):
        return "UnknownComponent", None
    setting = ch.settings.get(f"{component}.{variable}")
    return ("Accepted", setting) if setting else ("UnknownVariable", None)


def _get_variables(ch: SimCharger, p: Payload) -> Answer:
    results = []
    for d in p["getVariableData"]:
        status, setting = _variable(ch, d)
        result: Payload = {"component": d["component"], "variable": d["variable"]}
        if d.get("attributeType", "Actual") != "Actual" and setting:
            status = "NotSupportedAttributeType"
        result["attributeStatus"] = status
        if status == "Accepted" and setting:
            result["attributeValue"] = setting.value
        results.append(result)
    return {"getVariableResult": results}, None


def _set_variables(ch: SimCharger, p: Payload) -> Answer:
    results = []
    for d in p["setVariableData"]:
        status, setting = _variable(ch, d)
        if setting is not None and d.get("attributeType", "Actual") != "Actual":
            status = "NotSupportedAttributeType"
        elif setting is not None and (setting.readonly or not setting.accepts(d["attributeValue"])):
            status = "Rejected"
        elif setting is not None:
            setting.value = d["attributeValue"]
            ch.retime()
        results.append(
            {"attributeStatus": status, "component": d["component"], "variable": d["variable"]}
        )
    return {"setVariableResult": results}, None


def _clear_cache(ch: SimCharger, p: Payload) -> Answer:
    return {"status": "Accepted"}, None


def _send_local_list(ch: SimCharger, p: Payload) -> Answer:
    version = p["versionNumber"] if ch.v2 else p["listVersion"]
    if p["updateType"] == "Differential" and version <= ch.local_list_version:
        return {"status": "VersionMismatch"}, None  # OCPP 1.6 §5.15
    if p["updateType"] == "Full":
        ch.local_list.clear()
    for entry in p.get("localAuthorizationList") or []:
        tag = entry["idToken"]["idToken"] if ch.v2 else entry["idTag"]
        info = entry.get("idTokenInfo" if ch.v2 else "idTagInfo")
        if info is None:
            ch.local_list.pop(tag, None)
        else:
            ch.local_list[tag] = info["status"]
    ch.local_list_version = version
    return {"status": "Accepted"}, None


def _get_local_list_version(ch: SimCharger, p: Payload) -> Answer:
    key = "versionNumber" if ch.v2 else "listVersion"
    return {key: ch.local_list_version}, None


def _update_firmware(ch: SimCharger, p: Payload) -> Answer:
    extra = {"requestId": p["requestId"]} if ch.v2 else {}

    async def progress() -> None:
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            await asyncio.sleep(STEP_S)
            await ch.call("FirmwareStatusNotification", {"status": status, **extra})

    # OCPP 1.6 §6.52: UpdateFirmware.conf has no fields.
    return ({"status": "Accepted"} if ch.v2 else {}), progress


def _get_diagnostics(ch: SimCharger, p: Payload) -> Answer:
    async def upload() -> None:
        for status in ("Uploading", "Uploaded"):
            await asyncio.sleep(STEP_S)
            await ch.call("DiagnosticsStatusNotification", {"status": status})

    return {"fileName": f"{ch.cfg.id}-diagnostics.log"}, upload


def _get_log(ch: SimCharger, p: Payload) -> Answer:
    async def upload() -> None:
        for status in ("Uploading", "Uploaded"):
            await asyncio.sleep(STEP_S)
            payload = {"status": status, "requestId": p["requestId"]}
            await ch.call("LogStatusNotification", payload)

    return {"status": "Accepted", "filename": f"{ch.cfg.id}.log"}, upload


def _set_charging_profile(ch: SimCharger, p: Payload) -> Answer:
    if ch.v2:
        raw, connector = p["chargingProfile"], p["evseId"]
    else:
        raw, connector = p["csChargingProfiles"], p["connectorId"]
    profile = parse_profile(raw, connector, ch.cfg.phases)
    if not _supported(ch, raw) or not _acceptable(ch, profile):
        return {"status": "Rejected"}, None
    before = ch.settle_all()
    _install(ch, profile)
    return {"status": "Accepted"}, _after_limits(ch, before)


def _supported(ch: SimCharger, raw: Payload) -> bool:
    """The rate unit and period count this charger model takes (OCPP 1.6 §3.13.5)."""
    schedules = raw["chargingSchedule"]
    for schedule in schedules if isinstance(schedules, list) else [schedules]:
        if schedule["chargingRateUnit"] not in ch.cfg.profile_units:
            return False
        if len(schedule["chargingSchedulePeriod"]) > ch.cfg.max_periods:
            return False
    return True


def _acceptable(ch: SimCharger, profile: Profile) -> bool:
    """OCPP 1.6 §3.13.1 / 2.0.1 K01 rules on where a profile may go."""
    c = ch.connectors.get(profile.connector)
    if profile.connector and c is None:
        return False
    if profile.stack_level > MAX_STACK_LEVEL or not profile.periods:
        return False
    if profile.purpose in MAX_PURPOSES:
        return profile.connector == 0
    if profile.purpose == "TxProfile":
        return (
            c is not None
            and c.transaction is not None
            and profile.transaction in (None, c.transaction)
        )
    return True


def _install(ch: SimCharger, profile: Profile) -> None:
    """Same id, or same purpose and stack level on the connector, is replaced."""
    ch.profiles = [
        p
        for p in ch.profiles
        if p.id != profile.id
        and not (
            p.connector == profile.connector
            and p.purpose == profile.purpose
            and p.stack_level == profile.stack_level
        )
    ]
    ch.profiles.append(profile)


def _after_limits(ch: SimCharger, before: dict[int, float]) -> Callable[[], Any]:
    async def notify() -> None:
        for i, c in ch.connectors.items():
            if c.transaction is not None and ch.draw_a(i) != before[i]:
                await ch.rate_changed(c)

    return notify


def _clear_charging_profile(ch: SimCharger, p: Payload) -> Answer:
    if ch.v2:
        wanted_id = p.get("chargingProfileId")
        criteria = p.get("chargingProfileCriteria") or {}
        connector = criteria.get("evseId")
    else:
        wanted_id, criteria, connector = p.get("id"), p, p.get("connectorId")
    purpose, stack = criteria.get("chargingProfilePurpose"), criteria.get("stackLevel")

    def matches(prof: Profile) -> bool:
        if wanted_id is not None:
            return bool(prof.id == wanted_id)
        return (
            (connector is None or prof.connector == connector)
            and (purpose is None or prof.purpose == purpose)
            and (stack is None or prof.stack_level == stack)
        )

    before = ch.settle_all()
    kept = [prof for prof in ch.profiles if not matches(prof)]
    if len(kept) == len(ch.profiles):
        return {"status": "Unknown"}, None
    ch.profiles = kept
    return {"status": "Accepted"}, _after_limits(ch, before)


def _get_composite_schedule(ch: SimCharger, p: Payload) -> Answer:
    connector = p["evseId"] if ch.v2 else p["connectorId"]
    if connector and connector not in ch.connectors:
        return {"status": "Rejected"}, None
    unit = p.get("chargingRateUnit") or "A"
    amps = (
        ch.limit_a[connector]
        if connector
        else min(ch.limit_a.values(), default=ch.cfg.max_current_a)
    )
    limit = amps * VOLTS * ch.cfg.phases if unit == "W" else amps
    period = {"startPeriod": 0, "limit": round(limit, 1), "numberPhases": ch.cfg.phases}
    schedule: Payload = {
        "duration": p["duration"],
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [period],
    }
    if ch.v2:
        composite = {"evseId": connector, "scheduleStart": now_iso(), **schedule}
        return {"status": "Accepted", "schedule": composite}, None
    return {
        "status": "Accepted",
        "connectorId": connector,
        "scheduleStart": now_iso(),
        "chargingSchedule": schedule,
    }, None


def _data_transfer(ch: SimCharger, p: Payload) -> Answer:
    return {"status": "UnknownVendorId"}, None


_Handler = Callable[["SimCharger", Payload], Answer]

# Commands both versions have, then each version's own.
_COMMON: dict[str, _Handler] = {
    "Reset": _reset,
    "UnlockConnector": _unlock_connector,
    "ChangeAvailability": _change_availability,
    "TriggerMessage": _trigger_message,
    "ClearCache": _clear_cache,
    "SendLocalList": _send_local_list,
    "GetLocalListVersion": _get_local_list_version,
    "UpdateFirmware": _update_firmware,
    "SetChargingProfile": _set_charging_profile,
    "ClearChargingProfile": _clear_charging_profile,
    "GetCompositeSchedule": _get_composite_schedule,
    "DataTransfer": _data_transfer,
}
_V16_HANDLERS: dict[str, _Handler] = {
    **_COMMON,
    "RemoteStartTransaction": _remote_start_transaction,
    "RemoteStopTransaction": _remote_stop_transaction,
    "GetConfiguration": _get_configuration,
    "ChangeConfiguration": _change_configuration,
    "GetDiagnostics": _get_diagnostics,
}
_V2_HANDLERS: dict[str, _Handler] = {
    **_COMMON,
    "RequestStartTransaction": _request_start_transaction,
    "RequestStopTransaction": _request_stop_transaction,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetLog": _get_log,
}
