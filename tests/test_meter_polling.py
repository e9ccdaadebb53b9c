"""Polling real Modbus peers: pymodbus servers over TCP, RTU over TCP, and RTU on a
pseudo-terminal line; meters that fail, answer exceptions, garbage or nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from structlog.testing import capture_logs

from edge.domain.site_meter import MeterHealth, SiteMeterSample
from edge.modbus.bus import Bus, BusSettings, ExceptionAnswer, NoAnswer, NoConnection
from edge.modbus.poller import MeterPoller, MeterReader
from edge.modbus.profile import MeterProfile, parse_profile
from edge.sim.meter import SimBus, SimMeter
from edge.sim.serial_link import SerialLink
from edge.state.meters import MeterBoard
from tests.test_modbus_codec import PROFILE

VALUES = {
    "voltage_l1": 231.5,
    "current_l1": 14.25,
    "power": -3210.5,
    "import_wh": 1234500.0,
    "frequency": 50.01,
}


@pytest.fixture
def profile() -> MeterProfile:
    return parse_profile(PROFILE, "test")


@pytest.fixture
async def line() -> AsyncIterator[SerialLink]:
    link = SerialLink()
    yield link
    link.close()


def _poller(reader: MeterReader, board: MeterBoard) -> MeterPoller:
    return MeterPoller(reader, 1.0, board.sample, board.failed)


async def test_tcp_meter_outage_is_logged_once_and_recovery_once(profile: MeterProfile) -> None:
    meter = SimMeter(profile, unit=7, values=VALUES)
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    bus = Bus(BusSettings("tcp", "127.0.0.1", port, timeout_s=0.3))
    board = MeterBoard([("grid", "grid", "test")], stale_after_s=10)
    poller = _poller(MeterReader("grid", profile, bus, 7), board)
    with capture_logs() as logs:
        sample = await poller.poll()
        assert sample is not None and sample.values["power"] == pytest.approx(-3210.5)
        assert sample.values["frequency"] == pytest.approx(50.01)
        await sim.stop()
        for _ in range(4):
            assert await poller.poll() is None
        now = datetime.now(sample.taken_at.tzinfo)
        assert board.health("grid", now) is MeterHealth.FAILING
        assert board.tracks["grid"].failures == 4
        await SimBus([meter]).serve_tcp(port=port)
        deadline = time.monotonic() + 10
        while await poller.poll() is None:  # reconnects after its backoff (about 1-2 s)
            assert time.monotonic() < deadline, board.tracks["grid"].last_error
            await asyncio.sleep(0.2)
    events = [e["event"] for e in logs if e["event"].startswith("meter.")]
    assert events == ["meter.failing", "meter.recovered"]
    assert board.health("grid", datetime.now(sample.taken_at.tzinfo)) is MeterHealth.OK
    await bus.close()


async def test_a_refused_connection_backs_off(profile: MeterProfile) -> None:
    sim = SimBus([SimMeter(profile, values=VALUES)])
    port = await sim.serve_tcp()
    await sim.stop()
    bus = Bus(BusSettings("tcp", "127.0.0.1", port, timeout_s=0.3))
    with pytest.raises(NoConnection, match="cannot connect"):
        await bus.read(4, 0, 2, 1)
    # the next attempts wait for the backoff instead of hammering the meter
    with pytest.raises(NoConnection, match="next attempt in"):
        await bus.read(4, 0, 2, 1)


async def test_exception_responses_are_named(profile: MeterProfile) -> None:
    meter = SimMeter(profile, values=VALUES)
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    bus = Bus(BusSettings("tcp", "127.0.0.1", port))
    reader = MeterReader("grid", profile, bus, 1)
    meter.fault = "exception"
    with pytest.raises(ExceptionAnswer, match=r"exception 4 \(Server Device Failure\)"):
        await reader.read_once()
    # unmapped registers: the device's own Illegal Data Address
    with pytest.raises(ExceptionAnswer, match=r"exception 2 \(Illegal Data Address\)"):
        meter.fault = None
        await bus.read(4, 9000, 2, 1)
    assert (await reader.read_once())["voltage_l1"] == pytest.approx(231.5)
    await bus.close()
    await sim.stop()


async def test_garbage_from_a_tcp_peer_is_no_answer(profile: MeterProfile) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(256):
            writer.write(b"\x00\x01garbage" + data[::-1])
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = Bus(BusSettings("tcp", "127.0.0.1", port, timeout_s=0.3))
    with pytest.raises(NoAnswer, match="no valid answer"):
        await MeterReader("grid", profile, bus, 1).read_once()
    await bus.close()
    server.close()


async def test_rtu_over_tcp(profile: MeterProfile) -> None:
    sim = SimBus([SimMeter(profile, unit=3, values=VALUES)])
    port = await sim.serve_tcp(rtu=True)
    bus = Bus(BusSettings("rtu-over-tcp", "127.0.0.1", port))
    values = await MeterReader("pv", profile, bus, 3).read_once()
    assert values["import_wh"] == pytest.approx(1234500.0)
    await bus.close()
    await sim.stop()


async def test_several_meters_on_one_rs485_line(profile: MeterProfile, line: SerialLink) -> None:
    """Two pollers share one serial client; each gets its own unit's values, always."""
    grid = SimMeter(profile, unit=1, values=VALUES)
    pv = SimMeter(profile, unit=2, values=dict(VALUES, power=-5000.0))
    sim = SimBus([grid, pv])
    await sim.serve_serial(line.a, 9600)
    bus = Bus(BusSettings("rtu", device=line.b, baudrate=9600, timeout_s=0.5))
    board = MeterBoard([("grid", "grid", "t"), ("pv", "pv", "t")], stale_after_s=10)
    pollers = [
        _poller(MeterReader("grid", profile, bus, 1), board),
        _poller(MeterReader("pv", profile, bus, 2), board),
    ]

    async def many(p: MeterPoller) -> list[SiteMeterSample | None]:
        return [await p.poll() for _ in range(10)]

    grid_samples, pv_samples = await asyncio.gather(*(many(p) for p in pollers))
    assert all(s is not None and s.values["power"] == pytest.approx(-3210.5) for s in grid_samples)
    assert all(s is not None and s.values["power"] == pytest.approx(-5000.0) for s in pv_samples)
    assert bus.requests == 20 * len(pollers[0].reader.reads)
    await bus.close()
    await sim.stop()


async def test_a_silent_or_garbled_unit_does_not_take_the_line_down(
    profile: MeterProfile, line: SerialLink
) -> None:
    grid = SimMeter(profile, unit=1, values=VALUES)
    ev = SimMeter(profile, unit=2, values=VALUES)
    sim = SimBus([grid, ev])
    await sim.serve_serial(line.a, 9600)
    bus = Bus(BusSettings("rtu", device=line.b, baudrate=9600, timeout_s=0.3))
    grid_reader = MeterReader("grid", profile, bus, 1)
    ev_reader = MeterReader("ev", profile, bus, 2)
    for fault in ("silent", "garbage"):
        ev.fault = fault
        started = time.monotonic()
        with pytest.raises(NoAnswer):
            await ev_reader.read_once()
        assert time.monotonic() - started < 1.0, "one request timeout, no retries"
        assert (await grid_reader.read_once())["current_l1"] == pytest.approx(14.25)
    # an absent unit id on the line is silence too
    with pytest.raises(NoAnswer):
        await MeterReader("x", profile, bus, 9).read_once()
    ev.fault = None
    assert (await ev_reader.read_once())["voltage_l1"] == pytest.approx(231.5)
    await bus.close()
    await sim.stop()


async def test_a_meter_that_freezes_is_reported_frozen(profile: MeterProfile) -> None:
    meter = SimMeter(profile, values=VALUES)
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    bus = Bus(BusSettings("tcp", "127.0.0.1", port))
    board = MeterBoard([("grid", "grid", "t")], stale_after_s=10)
    ev_current = [10.0]
    poller = MeterPoller(
        MeterReader("grid", profile, bus, 1),
        1.0,
        lambda s: board.sample(s, ev_current[0]),
        board.failed,
    )
    last = None
    for i in range(12):
        meter.set(power=1000.0 + i)  # a live meter
        last = await poller.poll()
    assert last is not None and board.health("grid", last.taken_at) is MeterHealth.OK
    for _ in range(12):  # the meter's values stop changing while the EVs ramp up
        ev_current[0] += 3
        last = await poller.poll()
    assert last is not None
    assert board.health("grid", last.taken_at) is MeterHealth.FROZEN
    assert board.trusted("grid", last.taken_at) is None
    await bus.close()
    await sim.stop()
