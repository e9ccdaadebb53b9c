"""Pure protocol code: frames, schema validation, command builders."""

from __future__ import annotations

import pytest

from edge.domain.station import OcppVersion
from edge.errors import BadCommand
from edge.ocpp import commands, frames, schemas

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21


@pytest.mark.parametrize(
    ("data", "version", "code", "answer_id"),
    [
        ("not json", V16, "FormationViolation", None),
        ("not json", V201, "RpcFrameworkError", "-1"),
        ('{"a": 1}', V201, "RpcFrameworkError", "-1"),
        ('[2, 17, "Heartbeat", {}]', V201, "RpcFrameworkError", "-1"),
        # readable but over-long id: answered with the id as sent
        (f'[2, "{"x" * 37}", "Heartbeat", {{}}]', V16, "FormationViolation", "x" * 37),
        ('[2, "a1", "Heartbeat", []]', V16, "FormationViolation", "a1"),
        ('[2, "a1", "Heartbeat", []]', V201, "FormatViolation", "a1"),
        ('[9, "a1", {}]', V201, "MessageTypeNotSupported", "a1"),
        ('[6, "a1", "NotifyPeriodicEventStream", {}]', V201, "MessageTypeNotSupported", "a1"),
        ('[2, "a1", "Heartbeat"]', V201, "RpcFrameworkError", "a1"),
    ],
)
def test_bad_frames_get_the_code_of_their_version(
    data: str, version: OcppVersion, code: str, answer_id: str | None
) -> None:
    with pytest.raises(frames.FrameError) as info:
        frames.parse(data, version)
    assert info.value.code == code and info.value.unique_id == answer_id


def test_21_frames_types_5_and_6() -> None:
    send = frames.parse('[6, "s", "NotifyPeriodicEventStream", {"x": 1}]', V21)
    assert send == frames.Send("s", "NotifyPeriodicEventStream", {"x": 1})
    err = frames.parse('[5, "r", "FormatViolation", "bad result", {}]', V21)
    assert isinstance(err, frames.CallResultError) and err.code == "FormatViolation"


def test_payload_rules_map_to_spec_codes() -> None:
    cases = [
        (
            {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
            "TypeConstraintViolation",
            "connectorId",
        ),
        ({"connectorId": 1, "status": "Available"}, "OccurenceConstraintViolation", "errorCode"),
        (
            {"connectorId": 1, "errorCode": "NoError", "status": "Nap"},
            "PropertyConstraintViolation",
            "status",
        ),
        (
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "extra": 1},
            "FormationViolation",
            "extra",
        ),
    ]
    for payload, code, field in cases:
        with pytest.raises(schemas.PayloadError) as info:
            schemas.validate_request(V16, "StatusNotification", payload)
        assert (info.value.code, info.value.details["field"]) == (code, field)


def test_real_world_timestamps_and_one_decimal_limits_pass() -> None:
    for ts in ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00.123+01:00", "2026-01-01T10:00:00"):
        schemas.validate_request(V16, "Heartbeat", {})
        schemas.validate_request(
            V16,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": ts},
        )
    out = commands.build(V16, "limit", {"amps": 21.4}, request_id=1)
    schemas.validate_request(V16, out.action, out.payload)  # 21.4 is not k*0.1 in binary


def test_action_knowledge_per_version() -> None:
    assert schemas.has_action(V16, "Reset") and not schemas.has_action(V16, "TransactionEvent")
    assert schemas.has_action(V201, "TransactionEvent") and not schemas.has_action(V201, "Fly")
    assert schemas.has_action(V21, "NotifyPeriodicEventStream")


ARGS = {
    "reset": {"hard": True},
    "start": {"connector": 1, "id_tag": "T"},
    "stop": {"transaction_id": 5},
    "unlock": {"connector": 1},
    "availability": {"connector": 1, "state": "inoperative"},
    "trigger": {"message": "statusnotification", "connector": 1},
    "config_get": {"key": "OCPPCommCtrlr.HeartbeatInterval"},
    "config_set": {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "60"},
    "limit": {"amps": 16},
    "clear_limit": {},
    "composite_schedule": {"connector": 1},
    "firmware": {"url": "http://x/f.bin"},
    "diagnostics": {"url": "ftp://x/"},
    "clear_cache": {},
    "local_list_version": {},
    "send_local_list": {"version": 3, "tags": [{"id_tag": "A", "expiry": "2027-01-01T00:00:00Z"}]},
    "data_transfer": {"vendor_id": "x", "data": "y"},
}


@pytest.mark.parametrize("version", [V16, V201, V21])
@pytest.mark.parametrize("command", commands.COMMANDS)
def test_every_command_builds_a_valid_call(version: OcppVersion, command: str) -> None:
    out = commands.build(version, command, ARGS[command], request_id=7)
    schemas.validate_request(version, out.action, out.payload)


def test_bad_command_arguments_say_what_is_wrong() -> None:
    with pytest.raises(BadCommand, match="id_tag"):
        commands.build(V16, "start", {"connector": 1}, request_id=1)
    with pytest.raises(BadCommand, match="operative or inoperative"):
        commands.build(V201, "availability", {"connector": 1, "state": "off"}, request_id=1)
    with pytest.raises(BadCommand, match="Heartbeat"):
        commands.build(V16, "trigger", {"message": "Nope"}, request_id=1)
    with pytest.raises(BadCommand, match=r"Component\.Variable"):
        commands.build(V201, "config_get", {"key": "HeartbeatInterval"}, request_id=1)
    with pytest.raises(BadCommand, match="exactly one"):
        commands.build(V16, "limit", {}, request_id=1)


def test_outcomes() -> None:
    assert commands.outcome("Reset", {"status": "Accepted"}) == (True, "Accepted")
    assert commands.outcome("UnlockConnector", {"status": "UnlockFailed"}) == (
        False,
        "UnlockFailed",
    )
    assert commands.outcome("GetConfiguration", {"configurationKey": []}) == (True, "Answered")
    assert commands.outcome(
        "SetVariables", {"setVariableResult": [{"attributeStatus": "Rejected"}]}
    ) == (False, "Rejected")
