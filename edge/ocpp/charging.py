"""Charging profiles that carry load-balancing limits, per OCPP version and charger quirks.

Plain builders: the caller passes the time. Two kinds (DESIGN.md §3):
- the limit itself, a TxDefaultProfile per connector (1.6 §3.13.2; 2.0.1 K01), sent as
  often as limits change. With an Absolute schedule it carries a second period that
  drops to the fail-safe level `fallback_after_s` after it was written; edge rewrites
  it before then, so only a gateway that stopped lets the fall-back take effect;
- the station max profile (ChargePointMaxProfile 1.6, ChargingStationMaxProfile 2.x),
  written once per boot: the most the station may ever draw.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from edge.domain.station import OcppVersion
from edge.domain.units import iso_utc
from edge.ocpp.charger_profile import ChargingQuirks
from edge.ocpp.commands import Outbound, limit_profile_id

# Fixed ids so that a new profile replaces ours (OCPP 1.6 §5.16.4; 2.0.1 K01.FR.05).
MAX_PROFILE_ID = 999


def rate(amps: float, phases: int, quirks: ChargingQuirks) -> float:
    """A current per phase in the charger's unit, rounded down to one decimal (the
    schemas allow one; rounding down never grants more than planned)."""
    value = amps * quirks.voltage_v * phases if quirks.rate_unit == "W" else amps
    return math.floor(max(value, 0.0) * 10 + 1e-6) / 10


def _period(start_s: int, amps: float, phases: int, quirks: ChargingQuirks) -> dict[str, object]:
    period: dict[str, object] = {"startPeriod": start_s, "limit": rate(amps, phases, quirks)}
    if quirks.number_phases:
        period["numberPhases"] = phases
    return period


def _profile(
    version: OcppVersion,
    profile_id: int,
    purpose: str,
    kind: str,
    stack_level: int,
    periods: list[dict[str, object]],
    unit: str,
    now: datetime,
) -> dict[str, object]:
    schedule: dict[str, object] = {"chargingRateUnit": unit, "chargingSchedulePeriod": periods}
    if kind == "Absolute":
        schedule["startSchedule"] = iso_utc(now)
    common = {
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
    }
    if version.is_v2:
        return {"id": profile_id, **common, "chargingSchedule": [{"id": profile_id, **schedule}]}
    return {"chargingProfileId": profile_id, **common, "chargingSchedule": schedule}


def limit_call(
    version: OcppVersion,
    connector: int,
    amps: float,
    phases: int,
    quirks: ChargingQuirks,
    now: datetime,
    fallback: tuple[float, float] | None = None,
) -> Outbound:
    """SetChargingProfile with the limit of one connector (0 = the whole station).

    `fallback` is (after_s, amps): the level the charger takes by itself when edge has
    not rewritten the profile by then. It needs an Absolute schedule with two periods.
    """
    periods = [_period(0, amps, phases, quirks)]
    if (
        fallback is not None
        and quirks.max_periods >= 2
        and quirks.profile_kind == "Absolute"
        and rate(fallback[1], phases, quirks) != periods[0]["limit"]
    ):
        periods.append(_period(max(1, math.ceil(fallback[0])), fallback[1], phases, quirks))
    pid = limit_profile_id(connector)
    profile = _profile(
        version,
        pid,
        "TxDefaultProfile",
        quirks.profile_kind,
        quirks.stack_level,
        periods,
        quirks.rate_unit,
        now,
    )
    if version.is_v2:
        return Outbound("SetChargingProfile", {"evseId": connector, "chargingProfile": profile})
    return Outbound("SetChargingProfile", {"connectorId": connector, "csChargingProfiles": profile})


def max_call(
    version: OcppVersion, amps: float, phases: int, quirks: ChargingQuirks, now: datetime
) -> Outbound:
    """SetChargingProfile with the station max profile on connector / EVSE 0.

    Absolute: 2.0.1 K01.FR.38 forbids a Relative ChargingStationMaxProfile.
    """
    purpose = "ChargingStationMaxProfile" if version.is_v2 else "ChargePointMaxProfile"
    periods = [_period(0, amps, phases, quirks)]
    profile = _profile(
        version, MAX_PROFILE_ID, purpose, "Absolute", 0, periods, quirks.rate_unit, now
    )
    if version.is_v2:
        return Outbound("SetChargingProfile", {"evseId": 0, "chargingProfile": profile})
    return Outbound("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile})


def profile_limit_a(
    version: OcppVersion, payload: dict[str, Any], phases: int, voltage_v: float = 230.0
) -> tuple[int, float] | None:
    """(connector, A per phase) a SetChargingProfile asks for now: its first period,
    W converted with the set voltage (OCPP 1.6 §3.13.3); None if it carries no limit."""
    if version.is_v2:
        connector, profile = payload.get("evseId", 0), payload.get("chargingProfile", {})
        schedules = profile.get("chargingSchedule") or [{}]
        schedule = schedules[0]
    else:
        connector, profile = payload.get("connectorId", 0), payload.get("csChargingProfiles", {})
        schedule = profile.get("chargingSchedule", {})
    periods = schedule.get("chargingSchedulePeriod") or []
    if not periods or not isinstance(periods[0].get("limit"), int | float):
        return None
    limit = float(periods[0]["limit"])
    if schedule.get("chargingRateUnit") == "W":
        limit /= voltage_v * int(periods[0].get("numberPhases", phases) or phases)
    return int(connector), max(limit, 0.0)


def cleared_connector(version: OcppVersion, payload: dict[str, Any]) -> int:
    """The connector a ClearChargingProfile names (0: all)."""
    if version.is_v2:
        return int((payload.get("chargingProfileCriteria") or {}).get("evseId") or 0)
    return int(payload.get("connectorId") or 0)
