"""Schema validation: real chargers' payloads pass, broken ones get the spec's error code."""

from __future__ import annotations

import copy
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.domain.station import OcppVersion
from edge.ocpp import schemas
from edge.ocpp.schemas import PayloadError

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21

METER_VALUES_16: dict[str, Any] = {
    "connectorId": 1,
    "transactionId": 42,
    "meterValue": [
        {
            "timestamp": "2026-01-01T10:00:00Z",
            "sampledValue": [
                {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            ],
        }
    ],
}

TRANSACTION_EVENT_2X: dict[str, Any] = {
    "eventType": "Updated",
    "timestamp": "2026-01-01T10:00:00.123Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 3,
    "transactionInfo": {"transactionId": "f3b1c2d4-0000-4e5f-8a9b-0123456789ab"},
    "evse": {"id": 1, "connectorId": 1},
    "meterValue": [
        {
            "timestamp": "2026-01-01T10:00:00+01:00",
            "sampledValue": [
                {"value": 1234.5, "measurand": "Energy.Active.Import.Register"},
                {"value": 16.0, "measurand": "Current.Import", "phase": "L1"},
            ],
        }
    ],
}

STATUS_16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


def _error(version: OcppVersion, action: str, payload: dict[str, Any]) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        schemas.validate_request(version, action, payload)
    return info.value


def test_typical_payloads_of_each_version_pass() -> None:
    schemas.validate_request(V16, "MeterValues", METER_VALUES_16)
    schemas.validate_request(V201, "TransactionEvent", TRANSACTION_EVENT_2X)
    schemas.validate_request(V21, "TransactionEvent", TRANSACTION_EVENT_2X)
    schemas.validate_request(V16, "Heartbeat", {})
    boot = {"status": "Accepted", "currentTime": "2026-01-01T10:00:00Z", "interval": 300}
    schemas.validate_response(V16, "BootNotification", boot)


def test_a_21_send_message_is_validated_by_its_own_schema() -> None:
    stream = {"id": 1, "pending": 0, "basetime": "2026-01-01T10:00:00Z", "data": [{"t": 0}]}
    assert _error(V21, "NotifyPeriodicEventStream", stream).details["field"] == "data[0].v"
    stream["data"] = [{"t": 0, "v": "230.4"}]
    schemas.validate_request(V21, "NotifyPeriodicEventStream", stream)


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({**STATUS_16, "connectorId": "1"}, "TypeConstraintViolation", "connectorId"),
        ({"connectorId": 1, "status": "Available"}, "OccurenceConstraintViolation", "errorCode"),
        ({**STATUS_16, "status": "Napping"}, "PropertyConstraintViolation", "status"),
        ({**STATUS_16, "info": "x" * 51}, "PropertyConstraintViolation", "info"),
        ({**STATUS_16, "timestamp": "yesterday"}, "PropertyConstraintViolation", "timestamp"),
        ({**STATUS_16, "extra": 1}, "FormationViolation", "extra"),
    ],
)
def test_16_rules_map_to_16_codes(payload: dict[str, Any], code: str, field: str) -> None:
    err = _error(V16, "StatusNotification", payload)
    assert (err.code, err.details["field"]) == (code, field)
    assert err.description.startswith(field)


@pytest.mark.parametrize("version", [V201, V21])
@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"seqNo": "3"}, "TypeConstraintViolation", "seqNo"),
        ({"triggerReason": None}, "OccurrenceConstraintViolation", "triggerReason"),
        ({"eventType": "Paused"}, "PropertyConstraintViolation", "eventType"),
        ({"evse": {"id": 1, "connectorId": 1, "colour": "red"}}, "ProtocolError", "evse.colour"),
        ({"meterValue": []}, "OccurrenceConstraintViolation", "meterValue"),
    ],
)
def test_2x_rules_map_to_2x_codes(
    version: OcppVersion, change: dict[str, Any], code: str, field: str
) -> None:
    payload = {**TRANSACTION_EVENT_2X, **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    err = _error(version, "TransactionEvent", payload)
    assert (err.code, err.details["field"]) == (code, field)


def test_the_failing_field_is_named_by_its_path() -> None:
    payload = copy.deepcopy(METER_VALUES_16)
    payload["meterValue"][0]["sampledValue"][1]["value"] = 16.0
    err = _error(V16, "MeterValues", payload)
    assert err.code == "TypeConstraintViolation"
    assert err.details["field"] == "meterValue[0].sampledValue[1].value"
    del payload["meterValue"][0]["timestamp"]
    assert _error(V16, "MeterValues", payload).details["field"] == "meterValue[0].timestamp"


def _profile_16(*limits: float) -> dict[str, Any]:
    periods = [{"startPeriod": 60 * i, "limit": x} for i, x in enumerate(limits)]
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": periods},
        },
    }


def test_16_limits_with_one_decimal_pass_although_binary_floats_are_inexact() -> None:
    # 21.4 / 0.1 == 213.99999999999997 and 0.1 * 3 == 0.30000000000000004 in binary.
    schemas.validate_request(V16, "SetChargingProfile", _profile_16(16, 21.4, 0.1 * 3, 7.7))
    answer = {
        "status": "Accepted",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 13.799999999999999}],
        },
    }
    schemas.validate_response(V16, "GetCompositeSchedule", answer)


def test_16_limits_with_two_decimals_are_refused() -> None:
    err = _error(V16, "SetChargingProfile", _profile_16(16, 21.45))
    assert err.code == "PropertyConstraintViolation"
    field = "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit"
    assert err.details == {"field": field, "rule": "multipleOf"}


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-01-01T10:00:00Z",
        "2024-01-01T10:00:00.123Z",
        "2024-01-01T10:00:00.123456789Z",
        "2024-01-01T10:00:00+01:00",
        "2024-01-01T10:00:00.5-03:00",
        "2024-01-01T10:00:00+0100",
        "2024-01-01T10:00:00z",
        "2024-01-01T10:00:00",  # no offset: read as UTC
    ],
)
def test_date_times_that_chargers_send_pass(timestamp: str) -> None:
    for version in OcppVersion:
        payload = {"status": "Accepted", "currentTime": timestamp, "interval": 300}
        schemas.validate_response(version, "BootNotification", payload)


@pytest.mark.parametrize(
    "timestamp",
    ["2024-01-01", "10:00:00", "2024-13-01T10:00:00Z", "2024-02-30T10:00:00Z", "now", ""],
)
def test_date_times_that_are_not_times_are_refused(timestamp: str) -> None:
    err = _error(V16, "StatusNotification", {**STATUS_16, "timestamp": timestamp})
    assert (err.code, err.details["field"]) == ("PropertyConstraintViolation", "timestamp")


def test_actions_are_known_per_version() -> None:
    assert schemas.has_action(V16, "Reset") and schemas.has_action(V16, "StartTransaction")
    assert not schemas.has_action(V16, "TransactionEvent")
    assert schemas.has_action(V201, "TransactionEvent") and not schemas.has_action(V201, "Fly")
    assert not schemas.has_action(V201, "NotifyPeriodicEventStream")
    assert schemas.has_action(V21, "NotifyPeriodicEventStream")
    assert not schemas.has_action(V201, "BootNotificationResponse")


def test_an_unknown_action_is_not_implemented() -> None:
    assert _error(V201, "StartTransaction", {}).code == "NotImplemented"


def test_warm_skips_actions_a_version_does_not_have() -> None:
    hot = ["Heartbeat", "MeterValues", "StatusNotification", "TransactionEvent"]
    for version in OcppVersion:
        schemas.warm(version, hot)
        schemas.validate_request(version, "Heartbeat", {})


# -- the Rust validator and the reference agree ---------------------------------------

SEEDS: list[tuple[OcppVersion, str, dict[str, Any]]] = [
    (V16, "MeterValues", METER_VALUES_16),
    (V16, "StatusNotification", {**STATUS_16, "timestamp": "2026-01-01T10:00:00Z"}),
    (
        V16,
        "StopTransaction",
        {
            "transactionId": 7,
            "meterStop": 1200,
            "timestamp": "2026-01-01T10:00:00Z",
            "reason": "Local",
            "transactionData": METER_VALUES_16["meterValue"],
        },
    ),
    (V16, "SetChargingProfile", _profile_16(16, 10)),
    (V201, "TransactionEvent", TRANSACTION_EVENT_2X),
    (V21, "TransactionEvent", TRANSACTION_EVENT_2X),
    (
        V201,
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}},
    ),
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=60),
    st.sampled_from(
        ["Available", "Wh", "L1", "Local", "2026-01-01T10:00:00Z", "2026-02-30T10:00:00Z", ""]
    ),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def _like(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=-5, max_value=2**31)
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5)
    if isinstance(value, str):
        words = ["Wh", "A", "L1", "L4", "Local", "Updated", "Started", "Central", "Remote"]
        dates = st.from_regex(
            r"20\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d(\.\d+)?Z?", fullmatch=True
        )
        return st.sampled_from(words) | dates | st.text(min_size=15, max_size=60)
    return _json


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def _mutants(draw: st.DrawFn) -> tuple[OcppVersion, str, Any]:
    version, action, seed = draw(st.sampled_from(SEEDS))
    payload = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(payload)))
        if not path:
            continue
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["same type", "replace", "delete", "add"]))
        if how == "same type":  # near the rules' edges: lengths, ranges, enums, dates
            parent[path[-1]] = draw(_like(parent[path[-1]]))
        elif how == "replace":
            parent[path[-1]] = draw(_json)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(_json)
        else:
            parent.append(draw(_json))
    return version, action, payload


def _reference_accepts(version: OcppVersion, action: str, payload: Any) -> bool:
    try:
        schemas._validator(version, action, False).check(payload)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


@pytest.mark.skipif(schemas.rust_validator() is None, reason="no jsonschema-rs wheel here")
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutants())
def test_the_rust_validator_accepts_exactly_what_the_reference_accepts(
    case: tuple[OcppVersion, str, Any],
) -> None:
    version, action, payload = case
    validator = schemas._validator(version, action, False)
    assert schemas._accepts(validator, payload) == _reference_accepts(version, action, payload)


def test_a_refused_payload_is_named_by_the_reference_validator() -> None:
    # The fast path only says no; the CALLERROR still names the rule and the field.
    payload = copy.deepcopy(TRANSACTION_EVENT_2X)
    payload["meterValue"][0]["sampledValue"][1]["phase"] = "L4"
    err = _error(V201, "TransactionEvent", payload)
    assert err.code == "PropertyConstraintViolation"
    assert err.details["field"] == "meterValue[0].sampledValue[1].phase"
