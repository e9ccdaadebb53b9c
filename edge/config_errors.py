"""pydantic's validation errors as the config's (TOML key, message) problems."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

Problem = tuple[str, str]


def problem(err: Any, root: type[BaseModel]) -> Problem:
    """One pydantic error as (TOML key, message)."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    path, owner, field = _locate(loc, root)
    if err["type"] == "extra_forbidden":
        names = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        allowed = ", ".join(names)
        return _key([*path, loc[-1]]), f"unknown key {loc[-1]!r}{hint}; allowed: {allowed}"
    return _key(path), _message(err, field)


def _locate(
    loc: tuple[str | int, ...], root: type[BaseModel]
) -> tuple[list[str | int], type[BaseModel] | None, FieldInfo | None]:
    """The TOML path of an error location, the model at its end, and the last field."""
    owner: type[BaseModel] | None = root
    field: FieldInfo | None = None
    path: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            path.append(part)
        elif owner is not None and part in owner.model_fields:
            field = owner.model_fields[part]
            path.append(part)
            owner = _model_in(field.annotation)
        # Any other part names a union member ("float", "function-after[...]"), not a key.
    return path, owner, field


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


def _literal_in(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return next((c for a in get_args(annotation) if (c := _literal_in(a))), ())


def _key(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string (in quotes)",
    "list_type": "must be an array",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "datetime_type": "must be a date and time such as 2027-12-31T23:59:59Z",
}


def _message(err: Any, field: FieldInfo | None) -> str:
    kind, got = err["type"], err.get("input")
    choices = _literal_in(field.annotation) if field else ()
    if kind == "missing":
        return "required" + (f"; one of: {_listing(choices)}" if choices else "")
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "literal_error":
        return f"must be one of: {_listing(choices)} (got {got!r})"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = _bounds(field)
        if bounds == "must be ":  # the constraint sits inside an optional: name the one hit
            ctx = err.get("ctx", {})
            words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
            bounds += " and ".join(f"{w} {_number(ctx[k])}" for k, w in words.items() if k in ctx)
        return f"{bounds} (got {got!r})"
    if kind in ("string_too_short", "too_short"):
        shortest = err["ctx"]["min_length"]
        return (
            "must not be empty" if shortest == 1 else f"must have at least {shortest} (got {got!r})"
        )
    if kind == "string_too_long":
        return f"must be at most {err['ctx']['max_length']} characters (got {len(got)})"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]} (got {got!r})"
    text = str(err["msg"])
    return f"{text[0].lower()}{text[1:]}"


def _listing(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _bounds(field: FieldInfo | None) -> str:
    """The allowed range of a field from its ge/gt/le/lt constraints, as a sentence."""
    limits = {type(m): m for m in (field.metadata if field else ())}
    ge, gt, le, lt = (limits.get(t) for t in (Ge, Gt, Le, Lt))
    if isinstance(ge, Ge) and isinstance(le, Le):
        return f"must be between {_number(ge.ge)} and {_number(le.le)}"
    parts = [
        f"at least {_number(ge.ge)}" if isinstance(ge, Ge) else "",
        f"greater than {_number(gt.gt)}" if isinstance(gt, Gt) else "",
        f"at most {_number(le.le)}" if isinstance(le, Le) else "",
        f"less than {_number(lt.lt)}" if isinstance(lt, Lt) else "",
    ]
    return "must be " + " and ".join(p for p in parts if p)


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def file_order(problem: Problem, root: type[BaseModel]) -> tuple[int, int]:
    """Sort key: sections in model order, then list index; stable within one entry."""
    match = re.match(r"(\w+)(?:\[(\d+)\])?", problem[0])
    sections = list(root.model_fields)
    if match is None or match[1] not in sections:
        return -1, 0  # "(syntax)", "(file)" and unknown sections lead
    return sections.index(match[1]), int(match[2] or 0)
