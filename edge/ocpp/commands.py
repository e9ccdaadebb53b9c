"""Operator commands (CLI / API) as the OCPP CALL of each version, and their outcome; pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from edge.domain.station import OcppVersion
from edge.domain.units import iso_utc
from edge.errors import BadCommand
from edge.ocpp import schemas

Args = Mapping[str, Any]
Payload = dict[str, Any]

# Charging profile ids that edge installs are fixed per purpose, so that a new one replaces
# the old one instead of stacking next to it (OCPP 1.6 §5.16.4: "a charging profile with
# the same chargingProfileId ... SHALL replace the existing"; 2.0.1 K01.FR.05 likewise).
# `limit` (TxDefaultProfile, stack level 0): 1000 + connector, so the whole-station limit
# (connector 0, id 1000) and a per-connector limit (OCPP 1.6 §3.13.1: connector > 0
# overrides connector 0 for that connector only) do not replace each other.
LIMIT_PROFILE_BASE = 1000

# Statuses that mean "done, or will be done" (1.6 and 2.x response enumerations):
# Scheduled (ChangeAvailability during a transaction), RebootRequired (ChangeConfiguration,
# SetVariables), AcceptedCanceled (UpdateFirmware / GetLog replacing a running one).
ACCEPTED = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})

# OCPP 1.6 §7.38 MessageTrigger; 2.0.1 / 2.1 MessageTriggerEnumType. 2.1's CustomTrigger
# needs a vendor trigger name and is not offered.
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

# A firmware download without a time: any past time means "now" (OCPP 1.6 §5.19,
# 2.0.1 L01); a fixed one keeps the builder free of a clock.
RETRIEVE_NOW = "1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Outbound:
    action: str
    payload: Payload


def limit_profile_id(connector: int) -> int:
    """The charging profile id of the `limit` on `connector` (0 = whole station)."""
    return LIMIT_PROFILE_BASE + connector


# -- argument readers: each names the argument and what it accepts -------------------------


def _int(args: Args, name: str, default: int | None = None, minimum: int = 0) -> int:
    value = args.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadCommand(f"{name}: an integer of at least {minimum} is required (got {value!r})")
    return value


def _str(args: Args, name: str, hint: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise BadCommand(f"{name}: {hint} is required (got {value!r})")
    return value


def _bool(args: Args, name: str, default: bool) -> bool:
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise BadCommand(f"{name}: true or false (got {value!r})")
    return value


def _time(value: Any, name: str) -> str:
    if isinstance(value, datetime):
        return iso_utc(value)
    if not isinstance(value, str):
        raise BadCommand(f"{name}: an ISO 8601 time such as 2026-01-31T22:00:00Z (got {value!r})")
    return value


def _connector(args: Args, default: int | None, minimum: int = 0) -> int:
    if args.get("connector", default) is None:
        raise BadCommand("connector: a connector number is required")
    return _int(args, "connector", default, minimum)


# -- builders ---------------------------------------------------------------------------------


def _reset(v: OcppVersion, a: Args, rid: int) -> Outbound:
    hard = _bool(a, "hard", False)
    if v.is_v2:  # 2.0.1 ResetEnumType: Immediate reboots now, OnIdle after transactions
        return Outbound("Reset", {"type": "Immediate" if hard else "OnIdle"})
    return Outbound("Reset", {"type": "Hard" if hard else "Soft"})


def _start(v: OcppVersion, a: Args, rid: int) -> Outbound:
    tag = _str(a, "id_tag", "the idTag to start with")
    # OCPP 1.6 §5.11: connectorId SHALL be > 0; 2.0.1 F01: evseId > 0.
    connector = _connector(a, 1, minimum=1)
    if v.is_v2:
        token = {"idToken": tag, "type": "Central"}
        payload = {"evseId": connector, "remoteStartId": rid, "idToken": token}
        return Outbound("RequestStartTransaction", payload)
    return Outbound("RemoteStartTransaction", {"connectorId": connector, "idTag": tag})


def _stop(v: OcppVersion, a: Args, rid: int) -> Outbound:
    tx = a.get("transaction_id")
    if v.is_v2:
        if isinstance(tx, bool) or not isinstance(tx, str | int) or tx == "":
            raise BadCommand(f"transaction_id: the charger's transactionId (got {tx!r})")
        return Outbound("RequestStopTransaction", {"transactionId": str(tx)})
    if isinstance(tx, str) and tx.lstrip("-").isdigit():
        tx = int(tx)
    if isinstance(tx, bool) or not isinstance(tx, int):
        raise BadCommand(f"transaction_id: the 1.6 transactionId, an integer (got {tx!r})")
    return Outbound("RemoteStopTransaction", {"transactionId": tx})


def _unlock(v: OcppVersion, a: Args, rid: int) -> Outbound:
    connector = _connector(a, 1, minimum=1)  # OCPP 1.6 §5.17: connectorId > 0
    if v.is_v2:
        # 2.x addresses EVSE + connector; without `evse` the connector number is the EVSE
        # and its (usually only) connector is 1.
        if a.get("evse") is None:
            return Outbound("UnlockConnector", {"evseId": connector, "connectorId": 1})
        evse = _int(a, "evse", minimum=1)
        return Outbound("UnlockConnector", {"evseId": evse, "connectorId": connector})
    return Outbound("UnlockConnector", {"connectorId": connector})


def _availability(v: OcppVersion, a: Args, rid: int) -> Outbound:
    state = a.get("state")
    if not isinstance(state, str) or state.lower() not in ("operative", "inoperative"):
        raise BadCommand(f"state: operative or inoperative (got {state!r})")
    status = state.lower().capitalize()
    connector = _connector(a, 0)
    if v.is_v2:
        payload: Payload = {"operationalStatus": status}
        if connector:  # no evse: the whole station (2.0.1 G03)
            payload["evse"] = {"id": connector}
        return Outbound("ChangeAvailability", payload)
    return Outbound("ChangeAvailability", {"connectorId": connector, "type": status})


def _trigger(v: OcppVersion, a: Args, rid: int) -> Outbound:
    wanted = a.get("message")
    names = {n.lower(): n for n in TRIGGERS[v]}
    message = names.get(wanted.lower()) if isinstance(wanted, str) else None
    if message is None:
        allowed = ", ".join(TRIGGERS[v])
        raise BadCommand(f"message: one of {allowed} for OCPP {v} (got {wanted!r})")
    payload: Payload = {"requestedMessage": message}
    if a.get("connector") is not None:
        connector = _connector(a, None)
        if v.is_v2:
            payload["evse"] = {"id": connector}
        else:
            payload["connectorId"] = connector
    return Outbound("TriggerMessage", payload)


def _component_variable(key: str) -> Payload:
    """ "Component.Variable" or "Component.Variable[instance]" as 2.x component/variable."""
    component, dot, variable = key.partition(".")
    instance = ""
    if variable.endswith("]") and "[" in variable:
        variable, _, instance = variable[:-1].partition("[")
    if not dot or not component or not variable:
        raise BadCommand(
            "key: OCPP 2.x keys are Component.Variable or Component.Variable[instance]"
            f" (got {key!r})"
        )
    var: Payload = {"name": variable}
    if instance:
        var["instance"] = instance
    return {"component": {"name": component}, "variable": var}


def _config_get(v: OcppVersion, a: Args, rid: int) -> Outbound:
    if v.is_v2:
        if a.get("key") is None:
            raise BadCommand(
                "key: a Component.Variable key is required for OCPP 2.x"
                " (GetBaseReport is not supported here)"
            )
        key = _str(a, "key", "a Component.Variable key")
        return Outbound("GetVariables", {"getVariableData": [_component_variable(key)]})
    if a.get("key") is None:
        return Outbound("GetConfiguration", {})  # OCPP 1.6 §5.8: no key = all keys
    return Outbound("GetConfiguration", {"key": [_str(a, "key", "a configuration key")]})


def _config_set(v: OcppVersion, a: Args, rid: int) -> Outbound:
    key = _str(a, "key", "the configuration key")
    value = a.get("value")
    if value is None or isinstance(value, dict | list):
        raise BadCommand(f"value: a text, number or true/false is required (got {value!r})")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if v.is_v2:
        data = {"attributeValue": text, **_component_variable(key)}
        return Outbound("SetVariables", {"setVariableData": [data]})
    return Outbound("ChangeConfiguration", {"key": key, "value": text})


def _limit(v: OcppVersion, a: Args, rid: int) -> Outbound:
    amps, watts = a.get("amps"), a.get("watts")
    if (amps is None) == (watts is None):
        raise BadCommand("amps, watts: give exactly one of them")
    name, raw = ("amps", amps) if amps is not None else ("watts", watts)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw < 1e9:
        raise BadCommand(f"{name}: a number of at least 0 is required (got {raw!r})")
    connector = _connector(a, 0)
    # One decimal: the OCPP 1.6 schemas say multipleOf 0.1 for limits.
    period = {"startPeriod": 0, "limit": round(float(raw), 1)}
    unit = "A" if name == "amps" else "W"
    pid = limit_profile_id(connector)
    profile: Payload = {
        "stackLevel": 0,
        # TxDefaultProfile, not the max profile: frequent writes (DESIGN.md §3).
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
    }
    if v.is_v2:
        schedule = {"id": pid, "chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
        profile = {"id": pid, **profile, "chargingSchedule": [schedule]}
        return Outbound("SetChargingProfile", {"evseId": connector, "chargingProfile": profile})
    schedule = {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
    profile = {"chargingProfileId": pid, **profile, "chargingSchedule": schedule}
    return Outbound("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile})


def _clear_limit(v: OcppVersion, a: Args, rid: int) -> Outbound:
    pid = limit_profile_id(_connector(a, 0))
    return Outbound("ClearChargingProfile", {"chargingProfileId" if v.is_v2 else "id": pid})


def _composite(v: OcppVersion, a: Args, rid: int) -> Outbound:
    connector = _connector(a, 0)
    duration = _int(a, "duration_s", 3600, minimum=1)
    return Outbound(
        "GetCompositeSchedule",
        {"evseId" if v.is_v2 else "connectorId": connector, "duration": duration},
    )


def _firmware(v: OcppVersion, a: Args, rid: int) -> Outbound:
    url = _str(a, "url", "the firmware URL")
    when = RETRIEVE_NOW if a.get("retrieve_at") is None else _time(a["retrieve_at"], "retrieve_at")
    if v.is_v2:
        firmware = {"location": url, "retrieveDateTime": when}
        return Outbound("UpdateFirmware", {"requestId": rid, "firmware": firmware})
    return Outbound("UpdateFirmware", {"location": url, "retrieveDate": when})


def _diagnostics(v: OcppVersion, a: Args, rid: int) -> Outbound:
    url = _str(a, "url", "the upload URL")
    if v.is_v2:
        log = {"remoteLocation": url}
        return Outbound("GetLog", {"logType": "DiagnosticsLog", "requestId": rid, "log": log})
    return Outbound("GetDiagnostics", {"location": url})


def _list_entry(v: OcppVersion, tag: Any, full: bool) -> Payload:
    if not isinstance(tag, Mapping) or not isinstance(tag.get("id_tag"), str):
        raise BadCommand(f"tags: each entry needs an id_tag (got {tag!r})")
    status = tag.get("status")
    if status is None and not full:
        # OCPP 1.6 §5.15 / 2.0.1 D01: in a differential update an entry without
        # idTagInfo removes the tag from the list.
        info: Payload | None = None
    else:
        info = {"status": status or "Accepted"}
        if tag.get("expiry") is not None:
            info["cacheExpiryDateTime" if v.is_v2 else "expiryDate"] = _time(
                tag["expiry"], "expiry"
            )
        parent = tag.get("parent_id_tag")
        if parent:
            info["groupIdToken" if v.is_v2 else "parentIdTag"] = (
                {"idToken": parent, "type": "Central"} if v.is_v2 else parent
            )
    if v.is_v2:
        entry: Payload = {"idToken": {"idToken": tag["id_tag"], "type": "Central"}}
        return entry if info is None else {**entry, "idTokenInfo": info}
    return {"idTag": tag["id_tag"]} if info is None else {"idTag": tag["id_tag"], "idTagInfo": info}


def _send_local_list(v: OcppVersion, a: Args, rid: int) -> Outbound:
    version = _int(a, "version", minimum=1)
    tags = a.get("tags", [])
    if not isinstance(tags, list):
        raise BadCommand(f"tags: a list of {{id_tag, status, expiry}} (got {tags!r})")
    full = _bool(a, "full", True)
    entries = [_list_entry(v, t, full) for t in tags]
    payload: Payload = {
        "versionNumber" if v.is_v2 else "listVersion": version,
        "updateType": "Full" if full else "Differential",
    }
    if entries:  # 2.x: minItems 1; an empty Full list clears the charger's list
        payload["localAuthorizationList"] = entries
    return Outbound("SendLocalList", payload)


def _data_transfer(v: OcppVersion, a: Args, rid: int) -> Outbound:
    payload: Payload = {"vendorId": _str(a, "vendor_id", "the vendorId")}
    if a.get("message_id") is not None:
        payload["messageId"] = _str(a, "message_id", "a messageId")
    data = a.get("data")
    if data is not None:
        # OCPP 1.6 DataTransfer.req data is a string; 2.x takes any JSON value.
        is_text = isinstance(data, str) or v.is_v2
        payload["data"] = data if is_text else orjson.dumps(data).decode()
    return Outbound("DataTransfer", payload)


def _plain(action: str) -> Callable[[OcppVersion, Args, int], Outbound]:
    return lambda v, a, rid: Outbound(action, {})


_Builder = Callable[[OcppVersion, Args, int], Outbound]

# command -> (builder, the arguments it takes)
_COMMANDS: dict[str, tuple[_Builder, tuple[str, ...]]] = {
    "reset": (_reset, ("hard",)),
    "start": (_start, ("connector", "id_tag")),
    "stop": (_stop, ("transaction_id",)),
    "unlock": (_unlock, ("connector", "evse")),
    "availability": (_availability, ("connector", "state")),
    "trigger": (_trigger, ("message", "connector")),
    "config_get": (_config_get, ("key",)),
    "config_set": (_config_set, ("key", "value")),
    "limit": (_limit, ("amps", "watts", "connector")),
    "clear_limit": (_clear_limit, ("connector",)),
    "composite_schedule": (_composite, ("connector", "duration_s")),
    "firmware": (_firmware, ("url", "retrieve_at")),
    "diagnostics": (_diagnostics, ("url",)),
    "clear_cache": (_plain("ClearCache"), ()),
    "local_list_version": (_plain("GetLocalListVersion"), ()),
    "send_local_list": (_send_local_list, ("version", "tags", "full")),
    "data_transfer": (_data_transfer, ("vendor_id", "message_id", "data")),
}
COMMANDS: tuple[str, ...] = tuple(_COMMANDS)


def build(version: OcppVersion, command: str, args: Args, *, request_id: int) -> Outbound:
    """The CALL that carries `command` to a station of `version`; BadCommand on bad args."""
    if command not in _COMMANDS:
        raise BadCommand(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
    builder, allowed = _COMMANDS[command]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no arguments"
        raise BadCommand(f"{command}: unknown argument {unknown[0]!r}; it takes {takes}")
    out = builder(version, args, request_id)
    try:
        # Limits the builders do not check themselves (an idTag longer than 20 characters,
        # a status outside the enumeration, ...) are still the operator's to fix.
        schemas.validate_request(version, out.action, out.payload)
    except schemas.PayloadError as exc:
        raise BadCommand(f"{command}: {exc.description}") from None
    return out


def outcome(action: str, response: Payload) -> tuple[bool, str]:
    """(accepted, status text) of a charger's answer to `action`."""
    status = response.get("status")
    if isinstance(status, str):
        info = response.get("statusInfo")
        reason = info.get("reasonCode") if isinstance(info, dict) else None
        return status in ACCEPTED, f"{status} ({reason})" if reason else status
    results = response.get("setVariableResult")
    if isinstance(results, list) and results:
        statuses = [str(r.get("attributeStatus", "")) for r in results if isinstance(r, dict)]
        return all(s in ACCEPTED for s in statuses), ", ".join(statuses)
    results = response.get("getVariableResult")
    if isinstance(results, list) and results:
        # A query is answered even when the variable is unknown; the status says which.
        statuses = [str(r.get("attributeStatus", "")) for r in results if isinstance(r, dict)]
        return True, ", ".join(statuses)
    # GetConfiguration, GetLocalListVersion, GetDiagnostics: the answer is the result.
    return True, "Answered"
