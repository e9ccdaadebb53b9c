"""Validation against the official OCPP JSON schemas, compiled lazily, once per action.

The schemas are the OCA files that the `ocpp` library ships. fastjsonschema turns each
into Python code on first use (a few ms each, so never all ~390 at import); after that
a message costs microseconds instead of the library's ~1 ms of jsonschema.

Where jsonschema-rs is installed (it has wheels for x86_64 and 64-bit ARM), a compiled
Rust validator of the same schema answers first, in about a quarter of the time (2.5
against 10 µs for a TransactionEvent). It only says yes or no: a payload it refuses
goes through fastjsonschema, which names the rule and the field for the CALLERROR and
stays the reference where the two would ever disagree. tests/test_schemas.py checks that
they agree on thousands of generated payloads.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastjsonschema

from edge.domain.station import OcppVersion
from edge.ocpp.frames import ErrorKind, error_name


def _ocpp_dir() -> Path:
    # Found without importing the `ocpp` package, which would cost start-up time for nothing.
    spec = importlib.util.find_spec("ocpp")
    if spec is None or spec.origin is None:
        raise ImportError("the `ocpp` package, whose JSON schemas edge uses, is not installed")
    return Path(spec.origin).parent


_OCPP_DIR = _ocpp_dir()
SCHEMA_DIRS = {
    OcppVersion.V16: _OCPP_DIR / "v16" / "schemas",
    OcppVersion.V201: _OCPP_DIR / "v201" / "schemas",
    OcppVersion.V21: _OCPP_DIR / "v21" / "schemas",
}

# RFC 3339 date-time as chargers send it: "Z" or "+01:00" (also "+0100"), any number of
# fraction digits. A missing offset is tolerated: chargers in the field send local times
# without one, and refusing their transactions helps nobody; edge.domain.units.parse_time
# reads those as UTC. The calendar check keeps what passes here parseable there.
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?")

# A float like 21.4 is not an exact multiple of 0.1 in binary, nor is 0.1 * 3; a value
# within this fraction of a step of a multiple counts as one.
_MULTIPLE_TOLERANCE = 1e-6


def _is_date_time(text: str) -> bool:
    if _DATE_TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:  # e.g. month 13
        return False
    return True


class PayloadError(Exception):
    """A payload that breaks its schema; `code` is the OCPP-J error code to answer."""

    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


# A path into a payload: property names, and None for "every item of this array".
_Path = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class _Validator:
    check: Callable[[Any], Any]
    multiples: tuple[tuple[_Path, float], ...]  # multipleOf rules checked with a tolerance
    accepts: Callable[[Any], bool] | None = None  # the Rust validator's yes or no


def _accepts(validator: _Validator, payload: Any) -> bool:
    if validator.accepts is None:
        return False
    try:
        return validator.accepts(payload)
    except Exception:  # a value it cannot take (none come from JSON): the reference decides
        return False


def _file(version: OcppVersion, action: str, response: bool) -> Path:
    suffix = "Response" if response else ("Request" if version.is_v2 else "")
    path = SCHEMA_DIRS[version] / f"{action}{suffix}.json"
    if not path.exists() and not response:
        # OCPP-J 2.1 §4.1.3: SEND messages (e.g. NotifyPeriodicEventStream) have no
        # "Request" suffix.
        path = SCHEMA_DIRS[version] / f"{action}.json"
    return path


@functools.cache
def _actions(version: OcppVersion) -> frozenset[str]:
    names = set()
    for path in SCHEMA_DIRS[version].glob("*.json"):
        if not path.name.endswith("Response.json"):
            names.add(path.name.removesuffix(".json").removesuffix("Request"))
    return frozenset(names)


def has_action(version: OcppVersion, action: str) -> bool:
    """Whether `action` is an action of `version` (in either direction)."""
    return action in _actions(version)


def _multiples(node: Any, root: dict[str, Any], path: _Path) -> Iterator[tuple[_Path, float]]:
    # The OCPP 1.6 schemas put `multipleOf: 0.1` on charging limits (SetChargingProfile,
    # RemoteStartTransaction, GetCompositeSchedule.conf); only properties/items/$ref lead
    # to them, and none of the schemas is recursive.
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        yield from _multiples(root["definitions"][ref.rsplit("/", 1)[1]], root, path)
    if isinstance(node.get("multipleOf"), int | float):
        yield path, float(node["multipleOf"])
    for name, child in node.get("properties", {}).items():
        yield from _multiples(child, root, (*path, name))
    yield from _multiples(node.get("items"), root, (*path, None))


def _without_multiples(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_multiples(v) for k, v in node.items() if k != "multipleOf"}
    if isinstance(node, list):
        return [_without_multiples(v) for v in node]
    return node


@functools.cache
def _validator(version: OcppVersion, action: str, response: bool) -> _Validator:
    path = _file(version, action, response)
    if not has_action(version, action) or not path.exists():
        raise PayloadError("NotImplemented", f"{action} is not an OCPP {version} action", {})
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    multiples = tuple(_multiples(schema, schema, ()))
    schema = _without_multiples(schema)
    # The 2.x "$id"s are URNs; fastjsonschema would try to resolve "$ref"s against them.
    schema.pop("$id", None)
    check = fastjsonschema.compile(schema, formats={"date-time": _is_date_time})
    rust = rust_validator()
    if rust is None:
        return _Validator(check, multiples)
    fast = rust.validator_for(schema, validate_formats=True, formats={"date-time": _is_date_time})
    return _Validator(check, multiples, fast.is_valid)


@functools.cache
def rust_validator() -> Any:
    """The jsonschema_rs module, or None where it is not installed (e.g. 32-bit ARM, with
    no wheel). Imported on the first compile, off the daemon's start (about 30 ms)."""
    try:
        import jsonschema_rs
    except ImportError:
        return None
    return jsonschema_rs


def _validate(version: OcppVersion, action: str, payload: Any, response: bool) -> None:
    validator = _validator(version, action, response)
    if not _accepts(validator, payload):
        try:
            validator.check(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _payload_error(version, exc) from None
    for path, step in validator.multiples:
        for field, value in _values(payload, path, ""):
            _check_multiple(field, value, step)


def validate_request(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """Validate a CALL (or 2.1 SEND) payload; raises PayloadError with the spec's code."""
    _validate(version, action, payload, response=False)


def validate_response(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """Validate the CALLRESULT payload of `action`; raises PayloadError."""
    _validate(version, action, payload, response=True)


def warm(version: OcppVersion, actions: Iterable[str]) -> None:
    """Compile the request validators of the hot actions; names `version` lacks are skipped."""
    for action in actions:
        if has_action(version, action):
            _validator(version, action, False)


def _values(node: Any, path: _Path, field: str) -> Iterator[tuple[str, Any]]:
    if not path:
        yield field, node
    elif path[0] is None:
        for i, item in enumerate(node if isinstance(node, list) else ()):
            yield from _values(item, path[1:], f"{field}[{i}]")
    elif isinstance(node, dict) and path[0] in node:
        name = path[0]
        yield from _values(node[name], path[1:], f"{field}.{name}" if field else name)


def _check_multiple(field: str, value: Any, step: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    quotient = value / step
    if not math.isfinite(quotient) or abs(quotient - round(quotient)) > _MULTIPLE_TOLERANCE:
        raise PayloadError(
            "PropertyConstraintViolation",
            f"{field}: must be a multiple of {step:g}",
            {"field": field, "rule": "multipleOf"},
        )


_OCCURRENCE_RULES = frozenset({"required", "minItems", "maxItems"})
_STRUCTURE_RULES = frozenset({"additionalProperties", "additionalItems"})


def _payload_error(
    version: OcppVersion, exc: fastjsonschema.JsonSchemaValueException
) -> PayloadError:
    # OCPP-J 1.6 §4.2.3 Table 7 / 2.0.1 §4.3 Table 8: the rule that failed decides the code.
    # A wrong JSON type is TypeConstraintViolation; a missing field or a list of the wrong
    # length breaks an occurrence (cardinality) constraint; a field the PDU does not define
    # makes the payload "not conform the PDU structure": FormationViolation in 1.6,
    # ProtocolError in 2.x (2.x FormatViolation is "syntactically incorrect", i.e. not JSON).
    # Everything else (enum, maxLength, minimum, format, ...) is an invalid value.
    rule = exc.rule or ""
    field = _field(exc.name or "data")
    message = exc.message.removeprefix(exc.name or "").strip()
    if rule == "type":
        code = "TypeConstraintViolation"
    elif rule in _OCCURRENCE_RULES:
        code = error_name(ErrorKind.OCCURRENCE, version)
        if rule == "required":
            field, message = _child(field, _missing(exc)), "is required"
    elif rule in _STRUCTURE_RULES:
        code = error_name(ErrorKind.STRUCTURE, version)
        field, message = _child(field, _extra(exc)), "is not a field of this message"
    else:
        code = "PropertyConstraintViolation"
    return PayloadError(code, f"{field or 'payload'}: {message}", {"field": field, "rule": rule})


def _field(name: str) -> str:
    # fastjsonschema names the failing value "data.meterValue[0].sampledValue[1].value".
    return name.removeprefix("data").removeprefix(".")


def _child(field: str, name: str) -> str:
    return f"{field}.{name}" if field and name else field or name


def _missing(exc: fastjsonschema.JsonSchemaValueException) -> str:
    present = exc.value if isinstance(exc.value, dict) else {}
    return next((k for k in exc.rule_definition or () if k not in present), "")


def _extra(exc: fastjsonschema.JsonSchemaValueException) -> str:
    if not isinstance(exc.value, dict) or not isinstance(exc.definition, dict):
        return ""
    known = exc.definition.get("properties", {})
    return next((k for k in exc.value if k not in known), "")
