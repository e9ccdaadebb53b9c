"""Operator commands: the CALL each version gets, argument errors, and reading the answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from edge.domain.station import OcppVersion
from edge.errors import BadCommand
from edge.ocpp import commands, schemas

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21
V2X = [V201, V21]

# Arguments as the CLI and the API send them; every command with every argument it takes.
ARGS: dict[str, dict[str, Any]] = {
    "reset": {"hard": True},
    "start": {"connector": 2, "id_tag": "TAG1"},
    "stop": {"transaction_id": 5},
    "unlock": {"connector": 1, "evse": 2},
    "availability": {"connector": 1, "state": "inoperative"},
    "trigger": {"message": "statusnotification", "connector": 1},
    "config_get": {"key": "OCPPCommCtrlr.HeartbeatInterval"},
    "config_set": {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": 60},
    "limit": {"amps": 21.4, "connector": 1},
    "clear_limit": {"connector": 1},
    "composite_schedule": {"connector": 1, "duration_s": 600},
    "firmware": {"url": "https://fw.example/f.bin", "retrieve_at": "2026-02-01T03:00:00Z"},
    "diagnostics": {"url": "ftp://logs.example/"},
    "clear_cache": {},
    "local_list_version": {},
    "send_local_list": {
        "version": 3,
        "full": True,
        "tags": [
            {"id_tag": "A", "status": "Accepted", "expiry": "2027-01-01T00:00:00Z"},
            {"id_tag": "B", "status": "Blocked", "expiry": None, "parent_id_tag": "G"},
        ],
    },
    "data_transfer": {"vendor_id": "com.example", "message_id": "m", "data": "y"},
}
# The smallest argument sets that are enough.
MINIMAL: dict[str, dict[str, Any]] = {
    "reset": {},
    "start": {"id_tag": "TAG1"},
    "stop": {"transaction_id": "7"},
    "unlock": {},
    "availability": {"state": "operative"},
    "trigger": {"message": "Heartbeat"},
    "config_get": {"key": "OCPPCommCtrlr.HeartbeatInterval"},
    "config_set": {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "60"},
    "limit": {"watts": 7400},
    "clear_limit": {},
    "composite_schedule": {},
    "firmware": {"url": "https://fw.example/f.bin"},
    "diagnostics": {"url": "ftp://logs.example/"},
    "clear_cache": {},
    "local_list_version": {},
    "send_local_list": {"version": 1},
    "data_transfer": {"vendor_id": "com.example"},
}


def test_every_command_has_example_arguments() -> None:
    assert set(ARGS) == set(MINIMAL) == set(commands.COMMANDS)


@pytest.mark.parametrize("version", list(OcppVersion))
@pytest.mark.parametrize("command", commands.COMMANDS)
@pytest.mark.parametrize("args", [ARGS, MINIMAL], ids=["all", "minimal"])
def test_every_command_builds_a_call_the_schema_accepts(
    version: OcppVersion, command: str, args: dict[str, dict[str, Any]]
) -> None:
    out = commands.build(version, command, args[command], request_id=7)
    assert schemas.has_action(version, out.action)
    schemas.validate_request(version, out.action, out.payload)


def _build(v: OcppVersion, command: str, **args: Any) -> commands.Outbound:
    return commands.build(v, command, args, request_id=7)


def test_reset_types_per_version() -> None:
    assert _build(V16, "reset", hard=True).payload == {"type": "Hard"}
    assert _build(V16, "reset").payload == {"type": "Soft"}
    assert _build(V201, "reset", hard=True).payload == {"type": "Immediate"}
    assert _build(V21, "reset", hard=False).payload == {"type": "OnIdle"}


def test_remote_start_per_version() -> None:
    out = _build(V16, "start", connector=2, id_tag="TAG1")
    assert out == commands.Outbound("RemoteStartTransaction", {"connectorId": 2, "idTag": "TAG1"})
    out = _build(V201, "start", connector=2, id_tag="TAG1")
    assert out.action == "RequestStartTransaction"
    assert out.payload == {
        "evseId": 2,
        "remoteStartId": 7,
        "idToken": {"idToken": "TAG1", "type": "Central"},
    }


def test_remote_stop_sends_the_transaction_id_in_the_type_of_its_version() -> None:
    assert _build(V16, "stop", transaction_id="12").payload == {"transactionId": 12}
    out = _build(V21, "stop", transaction_id=12)
    assert out == commands.Outbound("RequestStopTransaction", {"transactionId": "12"})


def test_unlock_addresses_evse_and_connector_in_2x() -> None:
    assert _build(V16, "unlock", connector=2).payload == {"connectorId": 2}
    assert _build(V201, "unlock", connector=2).payload == {"evseId": 2, "connectorId": 1}
    assert _build(V201, "unlock", connector=2, evse=2).payload == {"evseId": 2, "connectorId": 2}


def test_availability_of_the_whole_station_has_no_evse_in_2x() -> None:
    assert _build(V201, "availability", connector=0, state="Inoperative").payload == {
        "operationalStatus": "Inoperative"
    }
    assert _build(V21, "availability", connector=1, state="operative").payload == {
        "operationalStatus": "Operative",
        "evse": {"id": 1},
    }
    assert _build(V16, "availability", connector=0, state="OPERATIVE").payload == {
        "connectorId": 0,
        "type": "Operative",
    }


def test_trigger_names_are_read_case_insensitively_per_version() -> None:
    out = _build(V16, "trigger", message="metervalues", connector=1)
    assert out.payload == {"requestedMessage": "MeterValues", "connectorId": 1}
    out = _build(V201, "trigger", message="TRANSACTIONEVENT", connector=1)
    assert out.payload == {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    with pytest.raises(BadCommand, match="LogStatusNotification") as info:
        _build(V201, "trigger", message="DiagnosticsStatusNotification")
    assert "got 'DiagnosticsStatusNotification'" in str(info.value)


@pytest.mark.parametrize("version", list(OcppVersion))
def test_trigger_offers_every_message_of_the_version(version: OcppVersion) -> None:
    # The list matches the schema's enumeration, less 2.1's CustomTrigger (it needs a name).
    file = "TriggerMessage.json" if version is V16 else "TriggerMessageRequest.json"
    schema = json.loads((schemas.SCHEMA_DIRS[version] / file).read_text("utf-8-sig"))
    if version is V16:
        names = schema["properties"]["requestedMessage"]["enum"]
    else:
        names = schema["definitions"]["MessageTriggerEnumType"]["enum"]
    assert set(commands.TRIGGERS[version]) == set(names) - {"CustomTrigger"}


def test_2x_configuration_keys_are_component_and_variable() -> None:
    out = _build(V201, "config_get", key="EVSE.Power[2]")
    assert out.payload == {
        "getVariableData": [
            {"component": {"name": "EVSE"}, "variable": {"name": "Power", "instance": "2"}}
        ]
    }
    out = _build(V21, "config_set", key="OCPPCommCtrlr.HeartbeatInterval", value=90)
    assert out.payload["setVariableData"] == [
        {
            "attributeValue": "90",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
        }
    ]
    assert _build(V16, "config_set", key="AuthorizeRemoteTxRequests", value=True).payload == {
        "key": "AuthorizeRemoteTxRequests",
        "value": "true",
    }
    assert _build(V16, "config_get").payload == {}
    assert _build(V16, "config_get", key="HeartbeatInterval").payload == {
        "key": ["HeartbeatInterval"]
    }


def test_a_new_limit_replaces_the_previous_one_on_the_same_connector() -> None:
    first = _build(V16, "limit", amps=16, connector=1).payload["csChargingProfiles"]
    second = _build(V16, "limit", amps=10, connector=1).payload["csChargingProfiles"]
    station = _build(V16, "limit", amps=32).payload["csChargingProfiles"]
    assert first["chargingProfileId"] == second["chargingProfileId"]
    assert station["chargingProfileId"] != first["chargingProfileId"]
    assert first["chargingProfilePurpose"] == "TxDefaultProfile" and first["stackLevel"] == 0
    assert first["chargingProfileKind"] == "Relative"
    assert second["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10}]


def test_limit_in_2x_is_a_schedule_list_on_the_evse() -> None:
    for version in V2X:
        out = _build(version, "limit", watts=11040.04, connector=2)
        profile = out.payload["chargingProfile"]
        assert out.payload["evseId"] == 2 and profile["id"] == commands.limit_profile_id(2)
        [schedule] = profile["chargingSchedule"]
        assert schedule["chargingRateUnit"] == "W"
        assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 11040.0}]


@pytest.mark.parametrize("version", list(OcppVersion))
def test_clear_limit_clears_the_profile_that_limit_installed(version: OcppVersion) -> None:
    for connector in (0, 2):
        limit = _build(version, "limit", amps=16, connector=connector).payload
        profile = limit.get("csChargingProfiles") or limit["chargingProfile"]
        installed = profile.get("chargingProfileId", profile.get("id"))
        cleared = _build(version, "clear_limit", connector=connector).payload
        assert list(cleared.values()) == [installed]


def test_composite_schedule_asks_for_the_connector_or_evse() -> None:
    assert _build(V16, "composite_schedule", connector=1, duration_s=600).payload == {
        "connectorId": 1,
        "duration": 600,
    }
    assert _build(V201, "composite_schedule").payload == {"evseId": 0, "duration": 3600}


def test_firmware_and_diagnostics_per_version() -> None:
    when = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
    assert _build(V16, "firmware", url="https://f/x", retrieve_at=when).payload == {
        "location": "https://f/x",
        "retrieveDate": "2026-02-01T03:00:00.000Z",
    }
    assert _build(V201, "firmware", url="https://f/x").payload == {
        "requestId": 7,
        "firmware": {"location": "https://f/x", "retrieveDateTime": "1970-01-01T00:00:00Z"},
    }
    assert _build(V16, "diagnostics", url="ftp://d/").payload == {"location": "ftp://d/"}
    assert _build(V21, "diagnostics", url="ftp://d/") == commands.Outbound(
        "GetLog",
        {"logType": "DiagnosticsLog", "requestId": 7, "log": {"remoteLocation": "ftp://d/"}},
    )


def test_local_list_entries_per_version() -> None:
    tags = ARGS["send_local_list"]["tags"]
    v16 = _build(V16, "send_local_list", version=3, tags=tags).payload
    assert v16 == {
        "listVersion": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": tags[0]["expiry"]}},
            {"idTag": "B", "idTagInfo": {"status": "Blocked", "parentIdTag": "G"}},
        ],
    }
    v2 = _build(V201, "send_local_list", version=3, tags=tags, full=False).payload
    assert v2["versionNumber"] == 3 and v2["updateType"] == "Differential"
    assert v2["localAuthorizationList"][1] == {
        "idToken": {"idToken": "B", "type": "Central"},
        "idTokenInfo": {"status": "Blocked", "groupIdToken": {"idToken": "G", "type": "Central"}},
    }


def test_a_differential_entry_without_status_removes_the_tag() -> None:
    out = _build(V16, "send_local_list", version=4, full=False, tags=[{"id_tag": "A"}])
    assert out.payload["localAuthorizationList"] == [{"idTag": "A"}]
    out = _build(V21, "send_local_list", version=4, full=False, tags=[{"id_tag": "A"}])
    assert out.payload["localAuthorizationList"] == [
        {"idToken": {"idToken": "A", "type": "Central"}}
    ]


def test_an_empty_full_list_clears_the_chargers_list() -> None:
    for version in OcppVersion:
        out = _build(version, "send_local_list", version=5, tags=[])
        assert "localAuthorizationList" not in out.payload
        assert out.payload["updateType"] == "Full"


def test_data_transfer_data_is_text_in_16() -> None:
    assert _build(V16, "data_transfer", vendor_id="v", data={"a": 1}).payload == {
        "vendorId": "v",
        "data": '{"a":1}',
    }
    assert _build(V201, "data_transfer", vendor_id="v", data={"a": 1}).payload == {
        "vendorId": "v",
        "data": {"a": 1},
    }


@pytest.mark.parametrize(
    ("version", "command", "args", "message"),
    [
        (V16, "fly", {}, r"unknown command 'fly'; allowed: reset, start"),
        (V16, "start", {"connector": 1}, "id_tag"),
        (V16, "start", {"conector": 1, "id_tag": "T"}, r"unknown argument 'conector'.*connector"),
        (V16, "clear_cache", {"now": True}, "takes no arguments"),
        (V16, "start", {"connector": 0, "id_tag": "T"}, "connector: an integer of at least 1"),
        (V16, "start", {"id_tag": "T" * 21}, "idTag"),
        (V16, "reset", {"hard": "yes"}, "hard: true or false"),
        (V16, "stop", {"transaction_id": "abc"}, "transaction_id: the 1.6 transactionId"),
        (V201, "stop", {}, "transaction_id"),
        (V201, "availability", {"connector": 1, "state": "off"}, "operative or inoperative"),
        (V16, "trigger", {"message": "Nope"}, "BootNotification, DiagnosticsStatusNotification"),
        (V201, "config_get", {}, "GetBaseReport is not supported"),
        (V201, "config_get", {"key": "HeartbeatInterval"}, r"Component\.Variable"),
        (V201, "config_set", {"key": "A.B"}, "value"),
        (V16, "limit", {}, "exactly one of them"),
        (V16, "limit", {"amps": 16, "watts": 11000}, "exactly one of them"),
        (V16, "limit", {"amps": -1}, "amps: a number of at least 0"),
        (V16, "limit", {"watts": "lots"}, "watts: a number"),
        (V16, "limit", {"amps": 16, "connector": -1}, "connector"),
        (V16, "composite_schedule", {"duration_s": 0}, "duration_s"),
        (V16, "firmware", {}, "url"),
        (V201, "firmware", {"url": "u", "retrieve_at": "tomorrow"}, "retrieveDateTime"),
        (V16, "send_local_list", {"tags": []}, "version"),
        (V16, "send_local_list", {"version": 1, "tags": [{"status": "Accepted"}]}, "id_tag"),
        (
            V201,
            "send_local_list",
            {"version": 1, "tags": [{"id_tag": "A", "status": "Vip"}]},
            "status",
        ),
        (V16, "data_transfer", {"data": "x"}, "vendor_id"),
    ],
)
def test_bad_arguments_name_the_argument_and_what_is_allowed(
    version: OcppVersion, command: str, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadCommand, match=message):
        commands.build(version, command, args, request_id=1)


@pytest.mark.parametrize(
    ("action", "response", "expected"),
    [
        ("Reset", {"status": "Accepted"}, (True, "Accepted")),
        ("Reset", {"status": "Rejected"}, (False, "Rejected")),
        ("UnlockConnector", {"status": "Unlocked"}, (True, "Unlocked")),
        ("UnlockConnector", {"status": "UnlockFailed"}, (False, "UnlockFailed")),
        ("ChangeAvailability", {"status": "Scheduled"}, (True, "Scheduled")),
        ("ChangeConfiguration", {"status": "RebootRequired"}, (True, "RebootRequired")),
        ("ChangeConfiguration", {"status": "NotSupported"}, (False, "NotSupported")),
        ("UpdateFirmware", {"status": "AcceptedCanceled"}, (True, "AcceptedCanceled")),
        (
            "RequestStartTransaction",
            {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidIdToken"}},
            (False, "Rejected (InvalidIdToken)"),
        ),
        ("GetCompositeSchedule", {"status": "Rejected"}, (False, "Rejected")),
        ("GetConfiguration", {"configurationKey": [], "unknownKey": ["X"]}, (True, "Answered")),
        ("GetLocalListVersion", {"listVersion": 3}, (True, "Answered")),
        ("GetDiagnostics", {}, (True, "Answered")),
        (
            "GetVariables",
            {"getVariableResult": [{"attributeStatus": "UnknownVariable"}]},
            (True, "UnknownVariable"),
        ),
        (
            "SetVariables",
            {"setVariableResult": [{"attributeStatus": "RebootRequired"}]},
            (True, "RebootRequired"),
        ),
        (
            "SetVariables",
            {"setVariableResult": [{"attributeStatus": "Rejected"}]},
            (False, "Rejected"),
        ),
    ],
)
def test_outcome_of_an_answer(action: str, response: dict[str, Any], expected: tuple) -> None:
    assert commands.outcome(action, response) == expected
