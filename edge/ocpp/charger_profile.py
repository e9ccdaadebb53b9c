"""Charger quirks as data: `hardware/chargers/*.toml` (STYLE.md practice 4).

A profile says how a charger model wants its charging limits written: A or W, Absolute
or Relative, stack level, how many periods, its least accepted current, and what to
try when it rejects a profile; and whether it answers websocket pings. A station gets
the profile its `[[stations]] profile` names, else the first shipped file whose
vendor/model match its BootNotification, else `generic`.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import hardware
from edge.errors import EdgeError

GENERIC = "generic"
RETRIES = ("W", "single-period", "relative", "stack-level-1")


class ChargerProfileError(EdgeError):
    """A charger profile is missing or wrong; `problems` lists (key, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Charger(_Strict):
    name: str
    vendor: str = ""
    model: str = ""


class _Charging(_Strict):
    rate_unit: Literal["A", "W"] = "A"
    profile_kind: Literal["Absolute", "Relative"] = "Absolute"
    stack_level: int = Field(default=0, ge=0, le=100)
    max_periods: int = Field(default=2, ge=1, le=1024)
    min_current_a: float = Field(default=6.0, ge=0, le=80)
    number_phases: bool = False
    voltage_v: float = Field(default=230.0, gt=0, le=1000)
    on_reject: list[Literal["W", "single-period", "relative", "stack-level-1"]] = []


class _Connection(_Strict):
    # RFC 6455 §5.5.2 has every endpoint answer a ping with a pong; some chargers never
    # do, and the keepalive then closes their connection every ping timeout.
    websocket_ping: bool = True


class _File(_Strict):
    charger: _Charger
    charging: _Charging = _Charging()
    connection: _Connection = _Connection()


@dataclass(frozen=True, slots=True)
class ChargingQuirks:
    """How one charger model takes charging profiles."""

    rate_unit: str = "A"
    profile_kind: str = "Absolute"
    stack_level: int = 0
    max_periods: int = 2
    min_current_a: float = 6.0
    number_phases: bool = False
    voltage_v: float = 230.0
    on_reject: tuple[str, ...] = ()

    def retried(self, how: str) -> ChargingQuirks:
        """These quirks changed the way one `on_reject` entry says."""
        from dataclasses import replace

        if how == "W":
            return replace(self, rate_unit="W", number_phases=True)
        if how == "single-period":
            return replace(self, max_periods=1)
        if how == "relative":
            return replace(self, profile_kind="Relative")
        if how == "stack-level-1":
            return replace(self, stack_level=self.stack_level + 1)
        raise ValueError(how)


@dataclass(frozen=True, slots=True)
class ChargerProfile:
    name: str  # file stem
    title: str
    vendor: str
    model: str
    charging: ChargingQuirks
    websocket_ping: bool = True  # whether edge sends it keepalive pings

    def matches(self, vendor: str, model: str) -> bool:
        """Whether a BootNotification's vendor and model are this profile's."""
        if not self.vendor or vendor.casefold() != self.vendor.casefold():
            return False
        return model.casefold().startswith(self.model.casefold())


def parse(text: str, name: str, source: str) -> ChargerProfile:
    """A profile from TOML text; ChargerProfileError lists every mistake."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChargerProfileError(source, [("(syntax)", str(exc))]) from None
    try:
        f = _File.model_validate(raw)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in e["loc"]) or "(file)", e["msg"]) for e in exc.errors()
        ]
        raise ChargerProfileError(source, problems) from None
    c = f.charging
    quirks = ChargingQuirks(
        c.rate_unit,
        c.profile_kind,
        c.stack_level,
        c.max_periods,
        c.min_current_a,
        c.number_phases,
        c.voltage_v,
        tuple(c.on_reject),
    )
    return ChargerProfile(
        name,
        f.charger.name,
        f.charger.vendor,
        f.charger.model,
        quirks,
        f.connection.websocket_ping,
    )


def shipped() -> dict[str, Path]:
    """Every shipped charger profile by stem."""
    return hardware.shipped("chargers")


def load(name: str) -> ChargerProfile:
    """A profile by stem (`generic-watts`) or by path to a `.toml` file."""
    path = hardware.locate("chargers", name)
    if path is None:
        known = ", ".join(shipped()) or "none"
        hint = f"shipped: {known}; or give a path to a .toml file"
        raise ChargerProfileError(name, [("profile", f"no such charger profile; {hint}")])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChargerProfileError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    return parse(text, path.stem, str(path))


@functools.lru_cache(maxsize=256)
def for_station(configured: str | None, vendor: str, model: str) -> ChargerProfile:
    """The profile a station uses: configured, else matched by vendor/model, else generic.
    Read once per (configured, vendor, model): chargers reconnect by the hundred at once."""
    if configured:
        return load(configured)
    for name in shipped():
        profile = load(name)
        if profile.matches(vendor, model):
            return profile
    return (
        load(GENERIC)
        if GENERIC in shipped()
        else ChargerProfile(GENERIC, "Generic OCPP charger", "", "", ChargingQuirks())
    )
