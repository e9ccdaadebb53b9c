"""Every shipped meter profile decodes its register dump to the expected values, and the
simulator serves it back through a real Modbus TCP exchange."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.modbus.bus import Bus, BusSettings, ExceptionAnswer
from edge.modbus.plan import Image, decode_all, plan_reads, spans
from edge.modbus.poller import MeterReader
from edge.modbus.profile import MeterProfile, Quantity, load_profile, shipped
from edge.modbus.sunspec import discover
from edge.sim.meter import SimBus, SimMeter

FIXTURES = Path(__file__).parent / "fixtures" / "meters"
REQUIRED = {
    "eastron-sdm630",
    "eastron-sdm72d-m",
    "eastron-sdm120",
    "carlogavazzi-em24",
    "carlogavazzi-em24-e1",
    "abb-b23",
    "janitza-umg96rm",
    "janitza-umg604",
    "siemens-pac2200",
    "sunspec-meter",
}
DUMPS = sorted(FIXTURES.glob("*.json"))


def _dump(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _registers(dump: dict[str, Any]) -> dict[tuple[int, int], int]:
    regs: dict[tuple[int, int], int] = {}
    for block in dump["blocks"]:
        for i, word in enumerate(block["words"]):
            regs[(block["function"], block["address"] + i)] = int(word, 16)
    return regs


async def _quantities(profile: MeterProfile, regs: dict[tuple[int, int], int]) -> Any:
    if not profile.discovers:
        return profile.quantities

    async def read(function: int, address: int, count: int) -> list[int]:
        if (function, address) not in regs:
            raise ExceptionAnswer(2, function, address, count)
        return [regs.get((function, address + i), 0) for i in range(count)]

    return (await discover(profile, read)).quantities


def test_the_required_profiles_are_shipped_and_each_has_a_dump() -> None:
    assert set(shipped()) >= REQUIRED
    dumped = {_dump(p)["profile"] for p in DUMPS}
    assert set(shipped()) <= dumped, "every shipped profile needs a dump in tests/fixtures/meters"


@pytest.mark.parametrize("path", DUMPS, ids=[p.stem for p in DUMPS])
async def test_a_dump_decodes_to_the_expected_values(path: Path) -> None:
    dump = _dump(path)
    profile = load_profile(dump["profile"])
    regs = _registers(dump)
    quantities: tuple[Quantity, ...] = await _quantities(profile, regs)
    image = Image()
    for r in plan_reads(spans(quantities), profile.max_registers, profile.max_gap):
        missing = [a for a in range(r.address, r.end) if (r.function, a) not in regs]
        assert not missing, f"the plan reads registers the dump lacks: {missing[:5]}"
        image.add(r, [regs[(r.function, a)] for a in range(r.address, r.end)])
    values = decode_all(quantities, image)
    expected = dump["expected"]
    assert set(values) == set(expected), "every quantity of the profile is in the dump"
    for name, want in expected.items():
        assert values[name] == pytest.approx(want, rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("stem", sorted(shipped()))
async def test_the_simulator_serves_every_profile(stem: str) -> None:
    profile = load_profile(stem)
    dump = next(_dump(p) for p in DUMPS if _dump(p)["profile"] == stem)
    sim = SimBus([SimMeter(profile, unit=3, values=dump["expected"])])
    port = await sim.serve_tcp()
    bus = Bus(BusSettings("tcp", "127.0.0.1", port))
    try:
        values = await MeterReader("m", profile, bus, 3).read_once()
    finally:
        await bus.close()
        await sim.stop()
    # int16 registers with a scale factor hold about four and a half digits
    rel = 1e-3 if profile.discovers else 1e-5
    for name, want in dump["expected"].items():
        if name in values:
            assert values[name] == pytest.approx(want, rel=rel, abs=0.02), name
    assert "power" in values


def test_profiles_list_and_check_from_the_cli(tmp_path: Path) -> None:
    def edge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60
        )

    listed = edge("profiles", "list", "--json")
    assert listed.returncode == 0
    stems = {p["profile"] for p in json.loads(listed.stdout) if p["kind"] == "meter"}
    assert stems >= REQUIRED
    chargers = {p["profile"]: p for p in json.loads(listed.stdout) if p["kind"] == "charger"}
    assert chargers["generic"]["quirks"].startswith("A, Absolute, stack level 0")
    checked = edge("profiles", "check", str(shipped()["eastron-sdm630"]))
    assert checked.returncode == 0 and "ok" in checked.stdout and "read(s)" in checked.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[profile]\nname = "x"\nproducts = ["x"]\nsources = ["x"]\nphases = 3\n'
        "max_current_a = 10\n[quantities]\n"
        'power = { function = 5, address = 0, type = "float32", unit = "W" }\n',
        encoding="utf-8",
    )
    failed = edge("profiles", "check", str(bad))
    assert failed.returncode == 1
    assert "quantities.power.function" in failed.stderr + failed.stdout
    # A charger profile (a [charger] table) is checked as one, every mistake named.
    quiet = tmp_path / "no-ping.toml"
    quiet.write_text('[charger]\nname = "No pong"\n[connection]\nwebsocket_ping = false\n')
    checked = edge("profiles", "check", str(quiet))
    assert checked.returncode == 0, checked.stderr
    assert "ok: charger profile No pong" in checked.stdout
    assert "no websocket pings" in checked.stdout
    quiet.write_text('[charger]\nname = "No pong"\n[connection]\nwebsocket_ping = "no"\n')
    failed = edge("profiles", "check", str(quiet))
    assert failed.returncode == 1 and "connection.websocket_ping" in failed.stderr
