"""OCPP-J RPC frames: parse and encode, no I/O.

OCPP-J 1.6 §4.1 and OCPP 2.0.1 Part 4 §4.1: CALL [2, id, action, payload],
CALLRESULT [3, id, payload], CALLERROR [4, id, code, description, details];
OCPP 2.1 Part 4 §4.1 adds CALLRESULTERROR [5, id, code, description, details] and
SEND [6, id, action, payload]. Message ids are strings of at most 36 characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from edge.domain.station import OcppVersion

MAX_ID_LENGTH = 36


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


class ErrorKind(StrEnum):
    """Error kinds whose name differs between OCPP-J 1.6 and 2.x."""

    FORMAT = "format"
    OCCURRENCE = "occurrence"
    RPC_FRAMEWORK = "rpc_framework"
    MESSAGE_TYPE = "message_type"


# OCPP-J 1.6 §4.2.3 has FormationViolation and the misspelt OccurenceConstraintViolation
# and no RpcFrameworkError / MessageTypeNotSupported, for which FormationViolation ("not
# conform the PDU structure") is the closest. OCPP 2.0.1 Part 4 §4.3 renames and adds.
_NAMES_16 = {
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.OCCURRENCE: "OccurenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "FormationViolation",
    ErrorKind.MESSAGE_TYPE: "FormationViolation",
}
_NAMES_2X = {
    ErrorKind.FORMAT: "FormatViolation",
    ErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    ErrorKind.MESSAGE_TYPE: "MessageTypeNotSupported",
}


def error_name(kind: ErrorKind, version: OcppVersion) -> str:
    """The error code of `kind` as spelled in `version`."""
    return (_NAMES_16 if version is OcppVersion.V16 else _NAMES_2X)[kind]


class FrameError(Exception):
    """A frame that cannot be taken; `unique_id` is what to answer with (None: no answer)."""

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


def _unreadable_id(version: OcppVersion) -> str | None:
    # OCPP 2.0.1 Part 4 §4.2.3: when the message id cannot be read, answer
    # RpcFrameworkError with message id "-1". OCPP-J 1.6 has no such rule: no answer.
    return None if version is OcppVersion.V16 else "-1"


def parse(data: str | bytes, version: OcppVersion) -> Frame:
    """Parse one websocket message into a frame, or raise FrameError with the spec's code."""
    rpc = error_name(ErrorKind.RPC_FRAMEWORK, version)
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise FrameError(rpc, "message is not valid JSON", _unreadable_id(version)) from None
    if not isinstance(msg, list) or len(msg) < 3:
        raise FrameError(rpc, "message is not an OCPP-J array", _unreadable_id(version))
    mtype, uid = msg[0], msg[1]
    if not isinstance(uid, str) or not uid or len(uid) > MAX_ID_LENGTH:
        raise FrameError(
            rpc,
            f"message id must be a string of 1 to {MAX_ID_LENGTH} characters",
            _unreadable_id(version),
        )
    allowed = {2, 3, 4} if version is not OcppVersion.V21 else {2, 3, 4, 5, 6}
    if type(mtype) is not int or mtype not in allowed:
        raise FrameError(
            error_name(ErrorKind.MESSAGE_TYPE, version),
            f"message type {mtype!r} not supported",
            uid,
        )
    if mtype in (MessageType.CALL, MessageType.SEND):
        return _parse_call(msg, uid, version, mtype)
    if mtype == MessageType.CALLRESULT:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError(rpc, "CALLRESULT must be [3, id, {payload}]", None)
        return CallResult(uid, msg[2])
    return _parse_error(msg, uid, version, mtype)


def _parse_call(msg: list[Any], uid: str, version: OcppVersion, mtype: int) -> Call | Send:
    fmt = error_name(ErrorKind.FORMAT, version)
    if len(msg) != 4 or not isinstance(msg[2], str) or not msg[2]:
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version), "CALL must be [2, id, action, {}]", uid
        )
    if not isinstance(msg[3], dict):
        raise FrameError(fmt, "payload must be a JSON object", uid)
    return Call(uid, msg[2], msg[3]) if mtype == MessageType.CALL else Send(uid, msg[2], msg[3])


def _parse_error(
    msg: list[Any], uid: str, version: OcppVersion, mtype: int
) -> CallError | CallResultError:
    # A malformed error frame is never answered (no error about an error).
    if len(msg) != 5 or not isinstance(msg[2], str) or not isinstance(msg[4], dict):
        raise FrameError(
            error_name(ErrorKind.RPC_FRAMEWORK, version), "CALLERROR must have 5 elements", None
        )
    description = msg[3] if isinstance(msg[3], str) else str(msg[3])
    cls = CallError if mtype == MessageType.CALLERROR else CallResultError
    return cls(uid, msg[2], description, msg[4])


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """[2, id, action, payload]."""
    return orjson.dumps([2, unique_id, action, payload]).decode()


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """[3, id, payload]."""
    return orjson.dumps([3, unique_id, payload]).decode()


def encode_error(
    unique_id: str, code: str, description: str = "", details: dict[str, Any] | None = None
) -> str:
    """[4, id, code, description, details]; the description is capped at 255 characters."""
    return orjson.dumps([4, unique_id, code, description[:255], details or {}]).decode()
