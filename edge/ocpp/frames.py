"""OCPP-J RPC frames: parse and encode, no I/O.

OCPP-J 1.6 §4.2 and OCPP-J 2.0.1 §4.2: CALL [2, id, action, payload],
CALLRESULT [3, id, payload], CALLERROR [4, id, code, description, details].
OCPP-J 2.1 §4.1.3 adds CALLRESULTERROR [5, id, code, description, details] and
SEND [6, id, action, payload]. Message ids are strings of at most 36 characters
(OCPP-J 1.6 §4.1.4, 2.0.1 §4.1.4 Table 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from edge.domain.station import OcppVersion

MAX_ID_LENGTH = 36
# OCPP-J 2.0.1 §4.2.3 Table 7: errorDescription is string[255].
MAX_DESCRIPTION_LENGTH = 255
# OCPP-J 2.0.1 §4.2.3: "When also the MessageId cannot be read, the CALLERROR SHALL
# contain "-1" as MessageId" (same text in 2.1 §4.2.3; OCPP-J 1.6 has no such rule).
UNREADABLE_ID = "-1"
_ID_RULE = f"message id must be a string of 1 to {MAX_ID_LENGTH} characters"


class MessageType(IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5
    SEND = 6


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResultError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Send:
    unique_id: str
    action: str
    payload: dict[str, Any]


Frame = Call | CallResult | CallError | CallResultError | Send

_TYPES = {
    OcppVersion.V16: frozenset({2, 3, 4}),
    OcppVersion.V201: frozenset({2, 3, 4}),
    OcppVersion.V21: frozenset({2, 3, 4, 5, 6}),
}


class ErrorKind(StrEnum):
    """Error codes whose name (or existence) differs between OCPP-J 1.6 and 2.x."""

    FORMAT = "format"  # payload syntactically incorrect
    STRUCTURE = "structure"  # payload does not conform to the PDU structure
    OCCURRENCE = "occurrence"  # a field missing or repeated too often
    RPC_FRAMEWORK = "rpc_framework"  # the frame itself is not a valid RPC message
    MESSAGE_TYPE = "message_type"  # unknown message type number


# OCPP-J 1.6 §4.2.3 Table 7 has FormationViolation ("syntactically incorrect or not conform
# the PDU structure") and the misspelt OccurenceConstraintViolation, which the 1.6 errata
# §5.1/§5.2 keep on purpose; it has no RpcFrameworkError / MessageTypeNotSupported, so
# FormationViolation is the closest. OCPP-J 2.0.1 §4.3 Table 8 splits FormationViolation
# into FormatViolation ("syntactically incorrect") and ProtocolError ("not conform the PDU
# structure") and adds RpcFrameworkError and MessageTypeNotSupported.
_NAMES_16 = {
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.STRUCTURE: "FormationViolation",
    ErrorKind.OCCURRENCE: "OccurenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "FormationViolation",
    ErrorKind.MESSAGE_TYPE: "FormationViolation",
}
_NAMES_2X = {
    ErrorKind.FORMAT: "FormatViolation",
    ErrorKind.STRUCTURE: "ProtocolError",
    ErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    ErrorKind.MESSAGE_TYPE: "MessageTypeNotSupported",
}


def error_name(kind: ErrorKind, version: OcppVersion) -> str:
    """The error code of `kind` as spelled in `version`."""
    return (_NAMES_2X if version.is_v2 else _NAMES_16)[kind]


class FrameError(Exception):
    """A frame that cannot be taken; `unique_id` is the id to answer with (None: no answer)."""

    def __init__(
        self,
        code: str,
        description: str,
        unique_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.details = details or {}


def _unreadable(version: OcppVersion, description: str) -> FrameError:
    # 2.x: RpcFrameworkError with "-1" (OCPP-J 2.0.1 §4.2.3, §4.3 "MessageId could not be
    # read"). 1.6 defines no id for this case; an answer nobody can match is not sent.
    uid = UNREADABLE_ID if version.is_v2 else None
    return FrameError(error_name(ErrorKind.RPC_FRAMEWORK, version), description, uid)


def parse(data: str | bytes, version: OcppVersion) -> Frame:
    """Parse one websocket message into a frame, or raise FrameError with the spec's code."""
    msg = _load(data, version)
    if not isinstance(msg, list) or not msg:
        raise _unreadable(version, "message is not an OCPP-J array")
    raw_id = msg[1] if len(msg) > 1 else None
    uid = raw_id if isinstance(raw_id, str) and raw_id else None
    mtype = msg[0]
    if type(mtype) is not int or mtype not in _TYPES[version]:
        raise _unknown_type(mtype, uid, version)
    if mtype == MessageType.CALL:
        return _parse_call(msg, uid, version)
    if mtype == MessageType.SEND:
        return _parse_send(msg, uid, version)
    # Results and errors are never answered with a CALLERROR, which answers CALLs only
    # (OCPP-J 2.0.1 §4.2.3); a malformed one is dropped ("the system is allowed to drop
    # the message", same clause). 2.1 could answer a bad CALLRESULT with CALLRESULTERROR.
    if uid is None or len(uid) > MAX_ID_LENGTH:
        raise FrameError(error_name(ErrorKind.RPC_FRAMEWORK, version), _ID_RULE, None)
    if mtype == MessageType.CALLRESULT:
        return _parse_result(msg, uid, version)
    return _parse_error(msg, uid, version, mtype)


def _load(data: str | bytes, version: OcppVersion) -> Any:
    # OCPP-J 1.6 §4.1.2 / 2.0.1 §4.1.2: the whole message MUST be JSON in UTF-8.
    text = data
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _not_utf8(data, version) from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _unreadable(version, "message is not valid JSON") from None


def _not_utf8(data: bytes, version: OcppVersion) -> FrameError:
    # A stray byte in a payload string leaves the message id readable: answer that CALL
    # with FormatViolation ("syntactically incorrect"); otherwise the id is unreadable.
    try:
        msg = orjson.loads(data.decode("utf-8", errors="replace"))
    except orjson.JSONDecodeError:
        return _unreadable(version, "message is not valid UTF-8")
    if not (isinstance(msg, list) and len(msg) > 1 and msg[0] == MessageType.CALL):
        return _unreadable(version, "message is not valid UTF-8")
    uid = msg[1]
    if not isinstance(uid, str) or not uid or "\ufffd" in uid or len(uid) > MAX_ID_LENGTH:
        return _unreadable(version, "message is not valid UTF-8")
    return FrameError(error_name(ErrorKind.FORMAT, version), "message is not valid UTF-8", uid)


def _unknown_type(mtype: Any, uid: str | None, version: OcppVersion) -> FrameError:
    description = f"message type {mtype!r} is not supported"
    if not version.is_v2:
        # OCPP-J 1.6 §4.1.3: a receiver "SHALL ignore" a message with an unknown type.
        return FrameError(error_name(ErrorKind.MESSAGE_TYPE, version), description, None)
    # OCPP-J 2.0.1 §4.4: answer MessageTypeNotSupported so that the sender falls back.
    # OCPP-J 2.1 §4.4 drops that sentence but keeps the code (§4.3); answering still tells
    # the sender what happened and costs nothing.
    answer = uid if uid is not None and len(uid) <= MAX_ID_LENGTH else UNREADABLE_ID
    return FrameError(error_name(ErrorKind.MESSAGE_TYPE, version), description, answer)


def _call_id(uid: str | None, version: OcppVersion) -> str:
    if uid is None:
        raise _unreadable(version, _ID_RULE)
    if len(uid) > MAX_ID_LENGTH:
        # OCPP-J 1.6 §4.2.3 and 2.0.1 §4.2.3 list "unique identifier too long" as a reason
        # for a CALLERROR, which carries "the exact same id" so the sender can match it.
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version),
            f"message id longer than {MAX_ID_LENGTH} characters",
            uid,
        )
    return uid


def _payload(value: Any) -> dict[str, Any] | None:
    # OCPP-J 2.0.1 §4.1.5: an empty payload may be written null or {}; both mean {}.
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def _parse_call(msg: list[Any], uid: str | None, version: OcppVersion) -> Call:
    uid = _call_id(uid, version)
    # OCPP-J 1.6 §4.2.1 / 2.0.1 §4.2.1: a CALL always has 4 elements.
    if len(msg) != 4 or not isinstance(msg[2], str) or not msg[2]:
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version),
            'a CALL is [2, "<id>", "<action>", {<payload>}]',
            uid,
        )
    payload = _payload(msg[3])
    if payload is None:
        raise FrameError(
            error_name(ErrorKind.FORMAT, version), "the payload is not a JSON object", uid
        )
    return Call(uid, msg[2], payload)


def _parse_send(msg: list[Any], uid: str | None, version: OcppVersion) -> Send:
    # OCPP-J 2.1 §4.2.4: "The receiver SHALL NOT respond to a SEND message with a
    # CALLRESULT or CALLERROR message", not even when it is malformed.
    action = msg[2] if len(msg) == 4 else None
    payload = _payload(msg[3]) if len(msg) == 4 else None
    valid_id = uid is not None and len(uid) <= MAX_ID_LENGTH
    if not valid_id or not isinstance(action, str) or not action or payload is None:
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version),
            'a SEND is [6, "<id>", "<action>", {<payload>}]',
            None,
        )
    assert uid is not None
    return Send(uid, action, payload)


def _parse_result(msg: list[Any], uid: str, version: OcppVersion) -> CallResult:
    # OCPP-J 2.0.1 §4.2.2: a CALLRESULT always has 3 elements.
    payload = _payload(msg[2]) if len(msg) == 3 else None
    if payload is None:
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version),
            'a CALLRESULT is [3, "<id>", {<payload>}]',
            None,
        )
    return CallResult(uid, payload)


def _parse_error(
    msg: list[Any], uid: str, version: OcppVersion, mtype: int
) -> CallError | CallResultError:
    # OCPP-J 2.0.1 §4.2.3 / 2.1 §4.2.3: always 5 elements; an empty description is "".
    if len(msg) != 5 or not isinstance(msg[2], str) or _payload(msg[4]) is None:
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version),
            'an error is [4, "<id>", "<code>", "<description>", {<details>}]',
            None,
        )
    description = msg[3] if isinstance(msg[3], str) else ("" if msg[3] is None else str(msg[3]))
    details = _payload(msg[4]) or {}
    if mtype == MessageType.CALLERROR:
        return CallError(uid, msg[2], description, details)
    return CallResultError(uid, msg[2], description, details)


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """[2, id, action, payload]."""
    return orjson.dumps([MessageType.CALL, unique_id, action, payload]).decode()


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """[3, id, payload]."""
    return orjson.dumps([MessageType.CALLRESULT, unique_id, payload]).decode()


def encode_error(
    unique_id: str, code: str, description: str = "", details: dict[str, Any] | None = None
) -> str:
    """[4, id, code, description, details]; the description is cut to 255 characters."""
    frame = [MessageType.CALLERROR, unique_id, code, description[:MAX_DESCRIPTION_LENGTH]]
    return orjson.dumps([*frame, details or {}]).decode()
