"""Charging profiles for load balancing: every shipped charger profile yields payloads
the official schemas accept, in every version; the quirks change what they should."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.domain.station import OcppVersion
from edge.ocpp import schemas
from edge.ocpp.charger_profile import (
    ChargerProfileError,
    ChargingQuirks,
    for_station,
    load,
    shipped,
)
from edge.ocpp.charging import MAX_PROFILE_ID, limit_call, max_call, rate

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", sorted(shipped()))
@pytest.mark.parametrize("version", list(OcppVersion))
def test_every_shipped_profile_gives_schema_valid_limits(name: str, version: OcppVersion) -> None:
    quirks = load(name).charging
    for amps in (0.0, 6.0, 13.37, 32.0):
        out = limit_call(version, 1, amps, 3, quirks, NOW, fallback=(300, 6.0))
        schemas.validate_request(version, out.action, out.payload)
    out = max_call(version, 30.0, 3, quirks, NOW)
    schemas.validate_request(version, out.action, out.payload)


def _periods(payload: dict, version: OcppVersion) -> list[dict]:
    if version.is_v2:
        return payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
    return payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]


def test_the_limit_falls_back_by_itself_when_not_rewritten() -> None:
    out = limit_call(OcppVersion.V16, 2, 16.0, 3, ChargingQuirks(), NOW, fallback=(300, 6.0))
    profile = out.payload["csChargingProfiles"]
    assert out.payload["connectorId"] == 2
    assert profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingProfileKind"] == "Absolute"
    assert profile["chargingSchedule"]["startSchedule"] == "2026-12-03T08:00:00.000Z"
    assert _periods(out.payload, OcppVersion.V16) == [
        {"startPeriod": 0, "limit": 16.0},
        {"startPeriod": 300, "limit": 6.0},
    ]


def test_no_fallback_period_where_the_charger_cannot_take_one() -> None:
    for quirks in (ChargingQuirks(max_periods=1), ChargingQuirks(profile_kind="Relative")):
        out = limit_call(OcppVersion.V201, 1, 16.0, 3, quirks, NOW, fallback=(300, 6.0))
        assert _periods(out.payload, OcppVersion.V201) == [{"startPeriod": 0, "limit": 16.0}]
    relative = limit_call(OcppVersion.V201, 1, 16, 3, ChargingQuirks(profile_kind="Relative"), NOW)
    assert "startSchedule" not in relative.payload["chargingProfile"]["chargingSchedule"][0]


def test_watts_are_the_total_over_the_phases_and_name_them() -> None:
    quirks = load("generic-watts").charging
    out = limit_call(OcppVersion.V201, 1, 16.0, 3, quirks, NOW)
    assert _periods(out.payload, OcppVersion.V201) == [
        {"startPeriod": 0, "limit": 11040.0, "numberPhases": 3}
    ]
    assert rate(10.04, 1, replace(quirks, rate_unit="A")) == 10.0  # rounded down


def test_the_station_max_profile_is_on_connector_zero_and_absolute() -> None:
    v16 = max_call(OcppVersion.V16, 30.0, 3, ChargingQuirks(), NOW).payload
    assert v16["connectorId"] == 0
    assert v16["csChargingProfiles"]["chargingProfilePurpose"] == "ChargePointMaxProfile"
    assert v16["csChargingProfiles"]["chargingProfileId"] == MAX_PROFILE_ID
    v2 = max_call(OcppVersion.V21, 30.0, 3, ChargingQuirks(profile_kind="Relative"), NOW).payload
    assert v2["evseId"] == 0
    assert v2["chargingProfile"]["chargingProfilePurpose"] == "ChargingStationMaxProfile"
    assert v2["chargingProfile"]["chargingProfileKind"] == "Absolute"  # 2.0.1 K01.FR.38


def test_a_station_gets_its_configured_profile_else_a_match_else_generic() -> None:
    assert for_station("generic-watts", "edge-sim", "X").name == "generic-watts"
    assert for_station(None, "EDGE-SIM", "SimCharger").name == "edge-sim"
    assert for_station(None, "Acme", "9000").name == "generic"


def test_a_broken_profile_lists_every_mistake(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(
        '[charger]\nname = "Acme"\n[charging]\nrate_unit = "kW"\nstack_level = -1\n'
        'on_reject = ["pray"]\ncolour = "red"\n'
    )
    with pytest.raises(ChargerProfileError) as err:
        load(str(path))
    keys = {key for key, _ in err.value.problems}
    assert keys == {
        "charging.rate_unit",
        "charging.stack_level",
        "charging.on_reject.0",
        "charging.colour",
    }


def test_retries_change_one_thing_each() -> None:
    q = ChargingQuirks()
    assert q.retried("W").rate_unit == "W" and q.retried("W").number_phases
    assert q.retried("single-period").max_periods == 1
    assert q.retried("relative").profile_kind == "Relative"
    assert q.retried("stack-level-1").stack_level == 1
