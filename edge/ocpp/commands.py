"""Operator commands (CLI / API) as OCPP CALLs of each version, and their outcome; pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.domain.station import OcppVersion
from edge.errors import BadCommand

Args = Mapping[str, Any]
Payload = dict[str, Any]

# The id of the charging profile that `limit` installs: a fixed id, so that a new limit
# replaces the previous one (OCPP 1.6 §3.13.2 / 2.0.1 K01.FR.05: same id replaces).
LIMIT_PROFILE_ID = 1001


@dataclass(frozen=True, slots=True)
class Outbound:
    action: str
    payload: Payload


def _need(args: Args, name: str, kind: type | tuple[type, ...], hint: str) -> Any:
    value = args.get(name)
    if value is None or (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise BadCommand(f"{name}: {hint}")
    return value


def _connector(args: Args, default: int | None = None) -> int:
    value = args.get("connector", default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadCommand("connector: a connector number (0 = the whole station) is required")
    return value


def _reset(v: OcppVersion, a: Args, rid: int) -> Outbound:
    hard = bool(a.get("hard", False))
    if v.is_v2:
        return Outbound("Reset", {"type": "Immediate" if hard else "OnIdle"})
    return Outbound("Reset", {"type": "Hard" if hard else "Soft"})


def _start(v: OcppVersion, a: Args, rid: int) -> Outbound:
    tag = _need(a, "id_tag", str, "the idTag to start with is required")
    connector = _connector(a, 1)
    if v.is_v2:
        payload: Payload = {"idToken": {"idToken": tag, "type": "Central"}, "remoteStartId": rid}
        if connector:
            payload["evseId"] = connector
        return Outbound("RequestStartTransaction", payload)
    return Outbound("RemoteStartTransaction", {"connectorId": connector, "idTag": tag})


def _stop(v: OcppVersion, a: Args, rid: int) -> Outbound:
    tx = a.get("transaction_id")
    if v.is_v2:
        return Outbound("RequestStopTransaction", {"transactionId": str(tx)})
    if not isinstance(tx, int):
        raise BadCommand("transaction_id: the 1.6 transactionId (an integer) is required")
    return Outbound("RemoteStopTransaction", {"transactionId": tx})


def _unlock(v: OcppVersion, a: Args, rid: int) -> Outbound:
    connector = _connector(a, 1)
    if v.is_v2:
        evse = a.get("evse", connector)
        return Outbound(
            "UnlockConnector",
            {"evseId": evse, "connectorId": 1 if evse == connector else connector},
        )
    return Outbound("UnlockConnector", {"connectorId": connector})


def _availability(v: OcppVersion, a: Args, rid: int) -> Outbound:
    state = str(a.get("state", "")).lower()
    if state not in ("operative", "inoperative"):
        raise BadCommand("state: must be operative or inoperative")
    connector = _connector(a, 0)
    if v.is_v2:
        payload: Payload = {"operationalStatus": state.capitalize()}
        if connector:
            payload["evse"] = {"id": connector}
        return Outbound("ChangeAvailability", payload)
    return Outbound("ChangeAvailability", {"connectorId": connector, "type": state.capitalize()})


TRIGGERS = {
    OcppVersion.V16: (
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    ),
    OcppVersion.V201: (
        "BootNotification",
        "LogStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "SignChargingStationCertificate",
        "SignV2GCertificate",
        "StatusNotification",
        "TransactionEvent",
        "SignCombinedCertificate",
        "PublishFirmwareStatusNotification",
    ),
}
TRIGGERS[OcppVersion.V21] = (*TRIGGERS[OcppVersion.V201], "SignV2G20Certificate")


def _trigger(v: OcppVersion, a: Args, rid: int) -> Outbound:
    wanted = str(a.get("message", ""))
    names = {n.lower(): n for n in TRIGGERS[v]}
    message = names.get(wanted.lower())
    if message is None:
        raise BadCommand(f"message: must be one of {', '.join(TRIGGERS[v])} (got {wanted!r})")
    payload: Payload = {"requestedMessage": message}
    if a.get("connector") is not None:
        connector = _connector(a)
        if v.is_v2:
            payload["evse"] = {"id": connector}
        else:
            payload["connectorId"] = connector
    return Outbound("TriggerMessage", payload)


def _component_variable(key: str) -> Payload:
    """ "Component.Variable" or "Component.Variable[instance]" as 2.x GetVariableData."""
    comp, sep, var = key.partition(".")
    if not sep or not comp or not var:
        raise BadCommand(f"key: OCPP 2.x keys are Component.Variable (got {key!r})")
    instance = None
    if var.endswith("]") and "[" in var:
        var, _, instance = var[:-1].partition("[")
    variable: Payload = {"name": var}
    if instance:
        variable["instance"] = instance
    return {"component": {"name": comp}, "variable": variable}


def _config_get(v: OcppVersion, a: Args, rid: int) -> Outbound:
    key = a.get("key")
    if v.is_v2:
        if not key:
            raise BadCommand("key: required for OCPP 2.x (GetBaseReport is not offered here)")
        return Outbound("GetVariables", {"getVariableData": [_component_variable(str(key))]})
    return Outbound("GetConfiguration", {"key": [str(key)]} if key else {})


def _config_set(v: OcppVersion, a: Args, rid: int) -> Outbound:
    key = _need(a, "key", str, "the configuration key is required")
    value = a.get("value")
    if value is None:
        raise BadCommand("value: required")
    if v.is_v2:
        data = {"attributeValue": str(value), **_component_variable(key)}
        return Outbound("SetVariables", {"setVariableData": [data]})
    return Outbound("ChangeConfiguration", {"key": key, "value": str(value)})


def _limit(v: OcppVersion, a: Args, rid: int) -> Outbound:
    amps, watts = a.get("amps"), a.get("watts")
    if (amps is None) == (watts is None):
        raise BadCommand("limit: give exactly one of amps or watts")
    raw = amps if amps is not None else watts
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise BadCommand(f"limit: must be a number of at least 0 (got {raw!r})")
    value = float(raw)
    unit = "A" if amps is not None else "W"
    # One decimal: OCPP 1.6 allows multipleOf 0.1 for limits.
    period = {"startPeriod": 0, "limit": round(value, 1)}
    connector = _connector(a, 0)
    # TxDefaultProfile for frequent limits (DESIGN.md §3: the max profile wears flash).
    if v.is_v2:
        profile = {
            "id": LIMIT_PROFILE_ID,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": LIMIT_PROFILE_ID,
                    "chargingRateUnit": unit,
                    "chargingSchedulePeriod": [period],
                }
            ],
        }
        return Outbound("SetChargingProfile", {"evseId": connector, "chargingProfile": profile})
    profile = {
        "chargingProfileId": LIMIT_PROFILE_ID,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]},
    }
    return Outbound("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile})


def _clear_limit(v: OcppVersion, a: Args, rid: int) -> Outbound:
    key = "chargingProfileId" if v.is_v2 else "id"
    return Outbound("ClearChargingProfile", {key: LIMIT_PROFILE_ID})


def _composite(v: OcppVersion, a: Args, rid: int) -> Outbound:
    duration = int(a.get("duration_s", 3600))
    connector = _connector(a, 0)
    key = "evseId" if v.is_v2 else "connectorId"
    return Outbound("GetCompositeSchedule", {key: connector, "duration": duration})


def _firmware(v: OcppVersion, a: Args, rid: int) -> Outbound:
    url = _need(a, "url", str, "the firmware URL is required")
    when = a.get("retrieve_at") or "1970-01-01T00:00:00Z"
    if v.is_v2:
        return Outbound(
            "UpdateFirmware",
            {"requestId": rid, "firmware": {"location": url, "retrieveDateTime": when}},
        )
    return Outbound("UpdateFirmware", {"location": url, "retrieveDate": when})


def _diagnostics(v: OcppVersion, a: Args, rid: int) -> Outbound:
    url = _need(a, "url", str, "the upload URL is required")
    if v.is_v2:
        return Outbound(
            "GetLog",
            {"logType": "DiagnosticsLog", "requestId": rid, "log": {"remoteLocation": url}},
        )
    return Outbound("GetDiagnostics", {"location": url})


def _send_local_list(v: OcppVersion, a: Args, rid: int) -> Outbound:
    version = _need(a, "version", int, "the list version (an integer) is required")
    tags = a.get("tags") or []
    update = "Full" if a.get("full", True) else "Differential"
    entries = []
    for t in tags:
        info: Payload = {"status": t.get("status", "Accepted")}
        if t.get("expiry"):
            info["cacheExpiryDateTime" if v.is_v2 else "expiryDate"] = t["expiry"]
        if v.is_v2:
            entries.append(
                {"idToken": {"idToken": t["id_tag"], "type": "Central"}, "idTokenInfo": info}
            )
        else:
            entries.append({"idTag": t["id_tag"], "idTagInfo": info})
    if v.is_v2:
        return Outbound(
            "SendLocalList",
            {"versionNumber": version, "updateType": update, "localAuthorizationList": entries},
        )
    return Outbound(
        "SendLocalList",
        {"listVersion": version, "updateType": update, "localAuthorizationList": entries},
    )


def _data_transfer(v: OcppVersion, a: Args, rid: int) -> Outbound:
    payload: Payload = {"vendorId": _need(a, "vendor_id", str, "the vendorId is required")}
    if a.get("message_id"):
        payload["messageId"] = str(a["message_id"])
    if a.get("data") is not None:
        payload["data"] = a["data"]
    return Outbound("DataTransfer", payload)


def _plain(action: str) -> Callable[[OcppVersion, Args, int], Outbound]:
    return lambda v, a, rid: Outbound(action, {})


BUILDERS: dict[str, Callable[[OcppVersion, Args, int], Outbound]] = {
    "reset": _reset,
    "start": _start,
    "stop": _stop,
    "unlock": _unlock,
    "availability": _availability,
    "trigger": _trigger,
    "config_get": _config_get,
    "config_set": _config_set,
    "limit": _limit,
    "clear_limit": _clear_limit,
    "composite_schedule": _composite,
    "firmware": _firmware,
    "diagnostics": _diagnostics,
    "clear_cache": _plain("ClearCache"),
    "local_list_version": _plain("GetLocalListVersion"),
    "send_local_list": _send_local_list,
    "data_transfer": _data_transfer,
}
COMMANDS: tuple[str, ...] = tuple(BUILDERS)

# Statuses that mean "done or will be done" (OCPP 1.6 §7, 2.0.1 enumerations).
ACCEPTED = frozenset(
    {
        "Accepted",
        "Unlocked",
        "Scheduled",
        "AcceptedCanceled",
        "RebootRequired",
        "AcceptedRebootRequired",
    }
)


def build(version: OcppVersion, command: str, args: Args, *, request_id: int) -> Outbound:
    """The CALL that carries `command` to a station of `version`; BadCommand on bad args."""
    builder = BUILDERS.get(command)
    if builder is None:
        raise BadCommand(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    return builder(version, args, request_id)


def outcome(action: str, response: Payload) -> tuple[bool, str]:
    """(accepted, status) of a charger's answer."""
    status = response.get("status")
    if isinstance(status, str):
        return status in ACCEPTED, status
    for key in ("setVariableResult", "getVariableResult"):
        results = response.get(key)
        if results:
            statuses = [r.get("attributeStatus", "") for r in results]
            return all(s == "Accepted" for s in statuses), ", ".join(statuses)
    # GetConfiguration, GetLocalListVersion, GetDiagnostics: an answer is the result.
    return True, "Answered"
