"""Charging profiles as a simulated charger keeps them: parsed from the CSMS's payload,
and the period that rules a connector at a given time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.domain.units import parse_time
from edge.sim.wire import Payload

# Purposes that cap the whole station rather than set a session's limit.
MAX_PURPOSES = frozenset(
    {"ChargePointMaxProfile", "ChargingStationMaxProfile", "ChargingStationExternalConstraints"}
)
VOLTS = 230.0  # OCPP 1.6 §3.13.3: W limits convert with the set voltage of the area


@dataclass(frozen=True, slots=True)
class Period:
    """One schedule period in A per phase; setpoint < 0 asks for discharge (OCPP 2.1 §Q)."""

    start_s: float
    limit_a: float | None
    setpoint_a: float | None = None
    discharge_limit_a: float | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A charging profile as installed, either version."""

    id: int
    connector: int
    purpose: str
    stack_level: int
    kind: str
    periods: tuple[Period, ...]
    start: datetime | None = None
    duration_s: float | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recurrency: str | None = None
    transaction: str | None = None

    def period_at(self, now: datetime, tx_started: datetime | None) -> Period | None:
        """The period in force at `now`, or None when the profile is not (OCPP 1.6 §3.13.2)."""
        if (self.valid_from and now < self.valid_from) or (self.valid_to and now >= self.valid_to):
            return None
        origin = self.start if self.kind != "Relative" else tx_started
        elapsed = (now - origin).total_seconds() if origin else 0.0
        if self.kind == "Recurring" and elapsed >= 0:
            elapsed %= 604800 if self.recurrency == "Weekly" else 86400
        if elapsed < 0 or (self.duration_s is not None and elapsed >= self.duration_s):
            return None
        found = None
        for p in self.periods:
            if p.start_s <= elapsed:
                found = p
        return found


def _amps(value: Any, unit: str, phases: int) -> float | None:
    if value is None:
        return None
    return float(value) / (VOLTS * phases) if unit == "W" else float(value)


def parse_period(raw: Payload, unit: str, phases: int) -> Period:
    """A 1.6 / 2.x chargingSchedulePeriod in A per phase; W over 230 V times numberPhases."""
    n = int(raw.get("numberPhases") or phases)
    limit = _amps(raw.get("limit"), unit, n)
    setpoint = _amps(raw.get("setpoint"), unit, n)
    if raw.get("operationMode") == "Idle":
        limit, setpoint = 0.0, None
    if limit is not None and limit < 0:
        # Before 2.1 a negative limit was the common way to ask for discharge.
        limit, setpoint = 0.0, limit
    discharge = _amps(raw.get("dischargeLimit"), unit, n)
    return Period(float(raw["startPeriod"]), limit, setpoint, abs(discharge) if discharge else None)


def parse_profile(raw: Payload, connector: int, phases: int) -> Profile:
    """csChargingProfiles (1.6) or chargingProfile (2.x) as a Profile."""
    schedule = raw["chargingSchedule"]
    if isinstance(schedule, list):  # 2.x: up to three schedules; the first one rules here
        schedule = schedule[0]
    unit = schedule["chargingRateUnit"]
    start = schedule.get("startSchedule")
    return Profile(
        id=int(raw["chargingProfileId"] if "chargingProfileId" in raw else raw["id"]),
        connector=connector,
        purpose=raw["chargingProfilePurpose"],
        stack_level=int(raw["stackLevel"]),
        kind=raw["chargingProfileKind"],
        periods=tuple(parse_period(p, unit, phases) for p in schedule["chargingSchedulePeriod"]),
        start=parse_time(start) if start else None,
        duration_s=schedule.get("duration"),
        valid_from=parse_time(raw["validFrom"]) if raw.get("validFrom") else None,
        valid_to=parse_time(raw["validTo"]) if raw.get("validTo") else None,
        recurrency=raw.get("recurrencyKind"),
        transaction=str(raw["transactionId"]) if raw.get("transactionId") is not None else None,
    )


def prevailing(
    profiles: Iterable[Profile], now: datetime, tx_started: datetime | None
) -> Period | None:
    """The period of the highest stack level in force (OCPP 1.6 §3.13.2 stacking)."""
    best: tuple[int, Period] | None = None
    for p in profiles:
        period = p.period_at(now, tx_started)
        if period is not None and (best is None or p.stack_level > best[0]):
            best = (p.stack_level, period)
    return best[1] if best else None
