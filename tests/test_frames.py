"""OCPP-J frames: what a charger gets back for every kind of broken message, per version."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.domain.station import OcppVersion
from edge.ocpp import frames
from edge.ocpp.frames import ErrorKind, FrameError

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21
LONG_ID = "x" * 37

# (message, version, error code, the id the error is answered with; None = not answered)
BROKEN = [
    # not JSON: the id cannot be read; 2.x answers "-1", 1.6 has no such rule
    ("not json", V16, "FormationViolation", None),
    ("not json", V201, "RpcFrameworkError", "-1"),
    ("not json", V21, "RpcFrameworkError", "-1"),
    # JSON, but not an OCPP-J array
    ('{"a": 1}', V16, "FormationViolation", None),
    ('{"a": 1}', V201, "RpcFrameworkError", "-1"),
    ("[]", V21, "RpcFrameworkError", "-1"),
    # message id not a string, empty, or missing
    ('[2, 17, "Heartbeat", {}]', V201, "RpcFrameworkError", "-1"),
    ('[2, "", "Heartbeat", {}]', V21, "RpcFrameworkError", "-1"),
    ("[2]", V16, "FormationViolation", None),
    # message id too long: still answered with that id so the sender can match it
    (f'[2, "{LONG_ID}", "Heartbeat", {{}}]', V16, "FormationViolation", LONG_ID),
    (f'[2, "{LONG_ID}", "Heartbeat", {{}}]', V201, "RpcFrameworkError", LONG_ID),
    # wrong number of elements
    ('[2, "a1", "Heartbeat"]', V16, "FormationViolation", "a1"),
    ('[2, "a1", "Heartbeat"]', V201, "RpcFrameworkError", "a1"),
    ('[2, "a1", "Heartbeat", {}, {}]', V21, "RpcFrameworkError", "a1"),
    # action not a string
    ('[2, "a1", 7, {}]', V16, "FormationViolation", "a1"),
    ('[2, "a1", null, {}]', V201, "RpcFrameworkError", "a1"),
    # payload not an object
    ('[2, "a1", "Heartbeat", []]', V16, "FormationViolation", "a1"),
    ('[2, "a1", "Heartbeat", "x"]', V201, "FormatViolation", "a1"),
    ('[2, "a1", "Heartbeat", 3]', V21, "FormatViolation", "a1"),
    # unknown message type: 1.6 ignores it, 2.x answers MessageTypeNotSupported
    ('[9, "a1", {}]', V16, "FormationViolation", None),
    ('[9, "a1", {}]', V201, "MessageTypeNotSupported", "a1"),
    ('[9, "a1", {}]', V21, "MessageTypeNotSupported", "a1"),
    ('["2", "a1", "Heartbeat", {}]', V201, "MessageTypeNotSupported", "a1"),
    ('[true, "a1", "Heartbeat", {}]', V21, "MessageTypeNotSupported", "a1"),
    ("[9, 5]", V201, "MessageTypeNotSupported", "-1"),
    # 2.1's CALLRESULTERROR and SEND before 2.1
    ('[5, "a1", "FormatViolation", "", {}]', V16, "FormationViolation", None),
    ('[5, "a1", "FormatViolation", "", {}]', V201, "MessageTypeNotSupported", "a1"),
    ('[6, "a1", "NotifyPeriodicEventStream", {}]', V16, "FormationViolation", None),
    ('[6, "a1", "NotifyPeriodicEventStream", {}]', V201, "MessageTypeNotSupported", "a1"),
    # a malformed SEND is never answered (OCPP-J 2.1 §4.2.4)
    ('[6, "a1", "NotifyPeriodicEventStream", []]', V21, "RpcFrameworkError", None),
    ('[6, "a1", 5, {}]', V21, "RpcFrameworkError", None),
    ('[6, "a1"]', V21, "RpcFrameworkError", None),
    ('[6, 5, "NotifyPeriodicEventStream", {}]', V21, "RpcFrameworkError", None),
    # a malformed result or error is dropped, never answered with a CALLERROR
    ('[3, "a1", []]', V201, "RpcFrameworkError", None),
    ('[3, "a1"]', V16, "FormationViolation", None),
    ("[3, 5, {}]", V201, "RpcFrameworkError", None),
    ('[4, "a1", "InternalError", ""]', V201, "RpcFrameworkError", None),
    ('[4, "a1", 5, "", {}]', V16, "FormationViolation", None),
    ('[5, "a1", "InternalError", "", []]', V21, "RpcFrameworkError", None),
]


@pytest.mark.parametrize(("data", "version", "code", "answer_id"), BROKEN)
def test_a_broken_frame_gets_the_code_and_answer_id_of_its_version(
    data: str, version: OcppVersion, code: str, answer_id: str | None
) -> None:
    with pytest.raises(FrameError) as info:
        frames.parse(data, version)
    assert (info.value.code, info.value.unique_id) == (code, answer_id)
    assert info.value.description


def test_a_frame_error_answer_is_a_well_formed_callerror() -> None:
    with pytest.raises(FrameError) as info:
        frames.parse("[2, oops", V201)
    err = info.value
    assert err.unique_id is not None
    answer = frames.parse(frames.encode_error(err.unique_id, err.code, err.description), V201)
    assert answer == frames.CallError("-1", "RpcFrameworkError", err.description, {})


@pytest.mark.parametrize(
    ("version", "code", "answer_id"),
    [(V16, "FormationViolation", "a1"), (V201, "FormatViolation", "a1")],
)
def test_bytes_that_are_not_utf8_inside_a_payload_answer_the_call(
    version: OcppVersion, code: str, answer_id: str
) -> None:
    data = b'[2, "a1", "DataTransfer", {"vendorId": "caf\xe9"}]'
    with pytest.raises(FrameError) as info:
        frames.parse(data, version)
    assert (info.value.code, info.value.unique_id) == (code, answer_id)


@pytest.mark.parametrize(
    ("version", "code", "answer_id"),
    [(V16, "FormationViolation", None), (V201, "RpcFrameworkError", "-1")],
)
def test_bytes_that_are_not_utf8_in_the_id_leave_it_unreadable(
    version: OcppVersion, code: str, answer_id: str | None
) -> None:
    for data in (b"\xff\xfe[2]", b'[2, "a\xff", "Heartbeat", {}]'):
        with pytest.raises(FrameError) as info:
            frames.parse(data, version)
        assert (info.value.code, info.value.unique_id) == (code, answer_id)


def test_utf8_bytes_parse_like_text() -> None:
    data = '[2, "ü1", "DataTransfer", {"vendorId": "Läder"}]'
    assert frames.parse(data.encode(), V16) == frames.parse(data, V16)
    assert frames.parse(data, V16) == frames.Call("ü1", "DataTransfer", {"vendorId": "Läder"})


@pytest.mark.parametrize("version", list(OcppVersion))
def test_every_version_reads_calls_results_and_errors(version: OcppVersion) -> None:
    uid = "0" * 36  # the longest id allowed
    call = frames.parse(frames.encode_call(uid, "Heartbeat", {}), version)
    assert call == frames.Call(uid, "Heartbeat", {})
    result = frames.parse(
        frames.encode_result(uid, {"currentTime": "2026-01-01T00:00:00Z"}), version
    )
    assert result == frames.CallResult(uid, {"currentTime": "2026-01-01T00:00:00Z"})
    error = frames.parse(frames.encode_error(uid, "NotSupported", "no", {"a": 1}), version)
    assert error == frames.CallError(uid, "NotSupported", "no", {"a": 1})


def test_null_payloads_and_details_read_as_empty_objects() -> None:
    # OCPP-J 2.0.1 §4.1.5: an empty payload may be null or {}.
    assert frames.parse('[2, "a", "Heartbeat", null]', V201) == frames.Call("a", "Heartbeat", {})
    assert frames.parse('[3, "a", null]', V16) == frames.CallResult("a", {})
    assert frames.parse('[4, "a", "GenericError", null, null]', V16) == frames.CallError(
        "a", "GenericError", "", {}
    )


def test_21_reads_callresulterror_and_send() -> None:
    send = frames.parse('[6, "s", "NotifyPeriodicEventStream", {"id": 1}]', V21)
    assert send == frames.Send("s", "NotifyPeriodicEventStream", {"id": 1})
    err = frames.parse('[5, "r", "FormatViolation", "bad result", {"f": 1}]', V21)
    assert err == frames.CallResultError("r", "FormatViolation", "bad result", {"f": 1})


def test_encoded_frames_are_compact_ocpp_j_arrays() -> None:
    assert frames.encode_call("1", "Heartbeat", {}) == '[2,"1","Heartbeat",{}]'
    assert frames.encode_result("1", {"a": "ü"}) == '[3,"1",{"a":"ü"}]'
    assert frames.encode_error("1", "InternalError") == '[4,"1","InternalError","",{}]'


def test_error_descriptions_are_cut_to_255_characters() -> None:
    # OCPP-J 2.0.1 §4.2.3 Table 7: errorDescription is string[255].
    frame = orjson.loads(frames.encode_error("1", "GenericError", "x" * 1000))
    assert len(frame[3]) == 255


@pytest.mark.parametrize(
    ("kind", "v16", "v2"),
    [
        (ErrorKind.FORMAT, "FormationViolation", "FormatViolation"),
        (ErrorKind.STRUCTURE, "FormationViolation", "ProtocolError"),
        (ErrorKind.OCCURRENCE, "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        (ErrorKind.RPC_FRAMEWORK, "FormationViolation", "RpcFrameworkError"),
        (ErrorKind.MESSAGE_TYPE, "FormationViolation", "MessageTypeNotSupported"),
    ],
)
def test_error_names_are_spelled_per_version(kind: ErrorKind, v16: str, v2: str) -> None:
    assert frames.error_name(kind, V16) == v16
    assert frames.error_name(kind, V201) == frames.error_name(kind, V21) == v2


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


_frame_like = st.builds(
    lambda mtype, rest: [mtype, *rest],
    st.sampled_from([2, 3, 4, 5, 6, 7]),
    st.lists(st.text(max_size=40) | _json, max_size=5),
)


@settings(max_examples=100, deadline=None)
@given(_frame_like | _json, st.sampled_from(list(OcppVersion)))
def test_any_json_is_a_frame_or_a_frame_error(value: object, version: OcppVersion) -> None:
    try:
        frame = frames.parse(orjson.dumps(value), version)
    except FrameError as err:
        # Whatever the charger sent, an answer carries a string id (OCPP-J 2.0.1 §4.2.3).
        assert err.unique_id is None or (isinstance(err.unique_id, str) and err.unique_id)
    else:
        assert isinstance(frame.unique_id, str) and 0 < len(frame.unique_id) <= 36
