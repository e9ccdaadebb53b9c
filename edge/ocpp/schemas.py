"""Validation against the official OCPP JSON schemas, compiled once per action.

The schemas are the ones the `ocpp` library ships (OCA's own files). fastjsonschema
turns each into Python code on first use: a few microseconds per message instead of
the library's ~1 ms of jsonschema in a thread pool.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp

from edge.domain.station import OcppVersion
from edge.ocpp.frames import ErrorKind, error_name

SCHEMA_DIRS = {
    OcppVersion.V16: Path(ocpp.__file__).parent / "v16" / "schemas",
    OcppVersion.V201: Path(ocpp.__file__).parent / "v201" / "schemas",
    OcppVersion.V21: Path(ocpp.__file__).parent / "v21" / "schemas",
}

# RFC 3339 date-time, but the offset may be missing: chargers in the field send local
# times without one; we read those as UTC (edge.domain.units.parse_time) instead of
# refusing their transactions.
DATE_TIME = r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?$"


class PayloadError(Exception):
    """A payload that breaks its schema; `code` is the OCPP-J error code to answer."""

    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


def _file(version: OcppVersion, action: str, response: bool) -> Path:
    suffix = "Response" if response else ("" if version is OcppVersion.V16 else "Request")
    path = SCHEMA_DIRS[version] / f"{action}{suffix}.json"
    # 2.1 SEND messages (e.g. NotifyPeriodicEventStream) have no Request suffix.
    return path if path.exists() else SCHEMA_DIRS[version] / f"{action}.json"


@functools.cache
def _actions(version: OcppVersion) -> frozenset[str]:
    suffix = "Request.json" if version.is_v2 else ".json"
    names = set()
    for path in SCHEMA_DIRS[version].glob("*.json"):
        name = path.name
        if name.endswith("Response.json"):
            continue
        names.add(name.removesuffix(suffix).removesuffix(".json"))
    return frozenset(names)


def has_action(version: OcppVersion, action: str) -> bool:
    """Whether `action` is an action of `version` (in either direction)."""
    return action in _actions(version)


def _strip_multiple_of(node: Any) -> Any:
    # OCPP 1.6 schemas put `multipleOf: 0.1` on charging-rate limits; in binary floats
    # 21.4 is not a multiple of 0.1, so valid values would be refused. Not enforced.
    if isinstance(node, dict):
        return {k: _strip_multiple_of(v) for k, v in node.items() if k != "multipleOf"}
    if isinstance(node, list):
        return [_strip_multiple_of(v) for v in node]
    return node


@functools.cache
def _validator(version: OcppVersion, action: str, response: bool) -> Callable[[Any], Any]:
    schema = json.loads(_file(version, action, response).read_text(encoding="utf-8-sig"))
    if version is OcppVersion.V16:
        schema = _strip_multiple_of(schema)
    schema.pop("$id", None)
    return fastjsonschema.compile(schema, formats={"date-time": DATE_TIME})


def _validate(version: OcppVersion, action: str, payload: Any, response: bool) -> None:
    try:
        _validator(version, action, response)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _payload_error(version, exc) from None


def validate_request(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """Validate a CALL payload; raises PayloadError with the spec's error code."""
    _validate(version, action, payload, response=False)


def validate_response(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """Validate a CALLRESULT payload of `action`."""
    _validate(version, action, payload, response=True)


def warm(version: OcppVersion, actions: Iterable[str]) -> None:
    """Compile the validators of the hot actions ahead of their first message."""
    for action in actions:
        _validator(version, action, False)


def _payload_error(
    version: OcppVersion, exc: fastjsonschema.JsonSchemaValueException
) -> PayloadError:
    # OCPP-J 1.6 §4.2.3 / 2.0.1 Part 4 §4.3: which rule failed decides the code.
    rule = exc.rule or ""
    field = _field(exc.name or "data")
    if rule == "type":
        code = "TypeConstraintViolation"
    elif rule == "required":
        code = error_name(ErrorKind.OCCURRENCE, version)
        missing = [k for k in (exc.rule_definition or ()) if k not in (exc.value or {})]
        field = ".".join(p for p in (field, missing[0] if missing else "") if p)
    elif rule in ("additionalProperties", "minItems", "maxItems"):
        code = (
            error_name(ErrorKind.OCCURRENCE, version)
            if rule != "additionalProperties"
            else error_name(ErrorKind.FORMAT, version)
        )
    else:
        code = "PropertyConstraintViolation"
    description = f"{field or 'payload'}: {exc.message.removeprefix(exc.name or '').strip()}"
    return PayloadError(code, description, {"field": field, "rule": rule})


def _field(name: str) -> str:
    # fastjsonschema names the failing value "data.meterValue[0].sampledValue"
    return name.removeprefix("data").removeprefix(".")
