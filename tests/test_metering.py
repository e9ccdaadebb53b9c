"""Metering settings for load balancing: at boot edge has each charger sample the car's
current, adding to what it samples and never taking anything away; a charger that
refuses is named in the log and still balanced."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from edge.domain.station import OcppVersion
from edge.ocpp import metering, schemas
from edge.ocpp.metering import INTERVAL, MEASURANDS, Sampling
from edge.sim.charger import SimCharger, SimStation
from tests.conftest import StartSite
from tests.test_meters_daemon import api, edge_cli
from tests.test_sim import online
from tests.wait import until

ENERGY = "Energy.Active.Import.Register"
LOAD = "\n[load]\ngrid_limit_a = 40\nperiod_s = 0.2\n"


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        # the usual factory setting: energy only, every minute
        (Sampling((ENERGY,), 60), [(MEASURANDS, f"{ENERGY},Current.Import"), (INTERVAL, "10")]),
        # what the charger samples besides is kept, in its order
        (
            Sampling(("SoC", "Voltage"), 5),
            [(MEASURANDS, f"SoC,Voltage,Current.Import,{ENERGY}")],
        ),
        (Sampling(("Current.Import", ENERGY), 10), []),
        (Sampling(("Current.Import", ENERGY), 0), [(INTERVAL, "10")]),  # 0: sampling off
        (Sampling(None, None), [(MEASURANDS, f"Current.Import,{ENERGY}"), (INTERVAL, "10")]),
        # a list the charger has room for (MeterValuesSampledDataMaxLength) ...
        (Sampling((ENERGY,), 10, 2), [(MEASURANDS, f"{ENERGY},Current.Import")]),
        # ... and one it has not: nothing the operator chose is dropped to make room
        (Sampling(("SoC", "Voltage"), 10, 3), []),
    ],
)
def test_only_what_is_missing_is_changed(
    current: Sampling, expected: list[tuple[str, str]]
) -> None:
    assert metering.changes(current, 10) == expected


@pytest.mark.parametrize("version", list(OcppVersion))
def test_the_calls_are_schema_valid_and_the_answers_read(version: OcppVersion) -> None:
    out = metering.read_call(version)
    schemas.validate_request(version, out.action, out.payload)
    for which, value in ((MEASURANDS, f"{ENERGY},Current.Import"), (INTERVAL, "10")):
        out = metering.write_call(version, which, value)
        schemas.validate_request(version, out.action, out.payload)
    if version.is_v2:
        answer = {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": f"{ENERGY}, SoC",
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedMeasurands"},
                },
                {
                    "attributeStatus": "UnknownVariable",
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedInterval"},
                },
            ]
        }
    else:
        answer = {
            "configurationKey": [
                {"key": "MeterValuesSampledData", "readonly": False, "value": f"{ENERGY}, SoC"},
                {"key": "MeterValuesSampledDataMaxLength", "readonly": True, "value": "4"},
            ],
            "unknownKey": ["MeterValueSampleInterval"],
        }
    schemas.validate_response(version, metering.read_call(version).action, answer)
    expected = Sampling((ENERGY, "SoC"), None, None if version.is_v2 else 4)
    assert metering.parse_read(version, answer) == expected


@pytest.mark.parametrize(
    ("version", "keys"),
    [
        ("1.6", ("MeterValuesSampledData", "MeterValueSampleInterval")),
        ("2.0.1", ("SampledDataCtrlr.TxUpdatedMeasurands", "SampledDataCtrlr.TxUpdatedInterval")),
    ],
)
async def test_a_charger_sampling_energy_only_is_made_to_report_the_cars_current(
    start_site: StartSite, version: str, keys: tuple[str, str]
) -> None:
    site = await start_site(LOAD)
    station = "CP16" if version == "1.6" else "CP201"
    cfg = SimStation(id=station, version=version, measurands=f"{ENERGY},SoC", meter_interval_s=60)
    async with online(SimCharger(cfg, site.url)) as charger:
        await until(lambda: charger.settings[keys[0]].value == f"{ENERGY},SoC,Current.Import")
        await until(lambda: charger.settings[keys[1]].value == "10")
        # What the car draws now reaches the balancer and `edge stations` (current_a);
        # with energy only it stayed unknown and counted as building load.
        await charger.start(1, "TAG1")
        state = site.daemon.registry.stations[station]
        for _ in range(100):
            await charger.send_meter(1)
            if state.current_a:
                break
            await asyncio.sleep(0.05)
        assert state.current_a == pytest.approx(3 * charger.draw_a(1))
        assert state.metering_error is None


async def test_a_charger_that_refuses_is_named_and_still_balanced(start_site: StartSite) -> None:
    site = await start_site(LOAD)
    charger = SimCharger(SimStation(id="CP16", measurands=ENERGY, meter_interval_s=5), site.url)
    charger.settings["MeterValuesSampledData"].readonly = True
    with capture_logs() as logs:
        async with online(charger):
            await charger.start(1, "TAG1")
            await until(lambda: any(e["event"] == "load.metering.refused" for e in logs))
            await until(lambda: any(a == "SetChargingProfile" for a, _ in charger.received[-3:]))
            refused = next(e for e in logs if e["event"] == "load.metering.refused")
            assert refused["station"] == "CP16"
            assert refused["setting"] == "MeterValuesSampledData"
            assert refused["status"] == "Rejected"
            # The site manager sees it too, in the API and in `edge stations`.
            status, station = await api(site, "/api/v1/stations/CP16")
            assert status == 200
            assert station["metering_error"] == "MeterValuesSampledData Rejected"
            code, out = await edge_cli("stations", "--api", site.api)
            assert code == 0
            assert "(metering: MeterValuesSampledData Rejected)" in out
            assert charger.settings["MeterValuesSampledData"].value == ENERGY
            # already often enough
            assert charger.settings["MeterValueSampleInterval"].value == "5"


async def test_a_list_the_charger_has_no_room_for_is_not_asked_for(
    start_site: StartSite,
) -> None:
    site = await start_site(LOAD)
    cfg = SimStation(id="CP16", measurands="SoC,Voltage", meter_interval_s=60)
    charger = SimCharger(cfg, site.url)
    charger.settings["MeterValuesSampledDataMaxLength"].value = "3"
    with capture_logs() as logs:
        async with online(charger):
            await until(lambda: charger.settings["MeterValueSampleInterval"].value == "10")
            await until(lambda: any(e["event"] == "load.metering.refused" for e in logs))
            refused = next(e for e in logs if e["event"] == "load.metering.refused")
            assert (refused["status"], refused["max_length"]) == ("TooLong", 3)
            assert refused["value"] == f"SoC,Voltage,Current.Import,{ENERGY}"
            _, station = await api(site, "/api/v1/stations/CP16")
            assert station["metering_error"] == (
                "MeterValuesSampledData would hold 4, the charger takes 3"
            )
            changed = [p["key"] for a, p in charger.received if a == "ChangeConfiguration"]
            assert changed == ["MeterValueSampleInterval"]
            assert charger.settings["MeterValuesSampledData"].value == "SoC,Voltage"


async def test_metering_is_left_alone_when_switched_off(start_site: StartSite) -> None:
    site = await start_site(LOAD + "meter_values_interval_s = 0\n")
    cfg = SimStation(id="CP16", measurands=ENERGY, meter_interval_s=60)
    async with online(SimCharger(cfg, site.url)) as charger:
        await charger.start(1, "TAG1")
        await until(lambda: any(a == "SetChargingProfile" for a, _ in charger.received))
        await asyncio.sleep(0.5)  # a few control periods: nothing else is asked
        asked = {a for a, _ in charger.received}
        assert asked == {"SetChargingProfile"}
        assert charger.settings["MeterValuesSampledData"].value == ENERGY
