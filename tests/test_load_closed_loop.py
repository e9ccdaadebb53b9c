"""Load balancing in a closed loop: a real daemon, simulated chargers that follow their
limits after a ramp delay, and a simulated grid meter (pymodbus over TCP) reading the
building load plus what the chargers actually draw. The building steps up and down,
sessions start and stop, the meter dies; the import must come back under the limit
within a control period plus the charger ramp, and the fail-safe must take over within
`stale_after_s` plus a period."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from edge.modbus.profile import load_profile
from edge.service.daemon import Daemon
from edge.sim.charger import SimCharger, SimStation
from edge.sim.meter import SimBus, SimMeter
from tests.conftest import StartSite
from tests.test_meters_daemon import edge_cli
from tests.wait import until

GRID_LIMIT = 40.0
MARGIN = 2.0
PERIOD = 0.2
RAMP = 0.3
POLL = 0.1
STALE = 1.0
FAILSAFE = 6.0
# What the loop itself cannot beat: one meter poll, the feeder's and the sampler's own
# step, and scheduling on a busy 2-core test machine.
SLACK = POLL + 0.25


def load_toml(port: int, extra: str = "", fallback_after_s: float = 30.0) -> str:
    stations = "".join(
        f'\n[[stations]]\nid = "LB{i}"\nmax_current_a = 32\nphases = 3\n' for i in range(4)
    )
    return f"""
{stations}
[[meters]]
id = "grid"
role = "grid"
profile = "eastron-sdm630"
host = "127.0.0.1"
port = {port}
poll_interval_s = {POLL}
timeout_s = 0.2

[load]
grid_limit_a = {GRID_LIMIT}
margin_a = {MARGIN}
min_current_a = 6
failsafe_current_a = {FAILSAFE}
stale_after_s = {STALE}
period_s = {PERIOD}
dwell_s = 0.5
hysteresis_a = 0.5
fallback_after_s = {fallback_after_s}
{extra}
"""


@dataclass
class Plant:
    """The physical site: building load per phase plus what the cars really draw."""

    meter: SimMeter
    chargers: list[SimCharger] = field(default_factory=list)
    building: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0])
    trace: list[tuple[float, float]] = field(default_factory=list)  # (t, max phase import)

    def currents(self) -> list[float]:
        ev = sum(c.draw_a(1) for c in self.chargers)
        return [b + ev for b in self.building]

    async def feed(self) -> None:
        start = time.monotonic()
        wobble = 0.0
        while True:
            amps = self.currents()
            # A real meter never reads exactly the same for long; one that does while the
            # cars report a change is taken for frozen (edge/state/meters.py).
            wobble = -0.01 - wobble
            values = {f"current_l{k + 1}": amps[k] + wobble for k in range(3)}
            values |= {f"voltage_l{k + 1}": 230.0 for k in range(3)}
            values |= {f"power_l{k + 1}": 230.0 * amps[k] for k in range(3)}
            self.meter.set(**values, power=230.0 * sum(amps), frequency=50.0)
            self.trace.append((time.monotonic() - start, max(amps)))
            await asyncio.sleep(0.02)

    def overloads(self, since: float, limit: float = GRID_LIMIT) -> list[float]:
        """Durations (s) of each stretch of the trace above `limit` after `since`."""
        spans, began = [], None
        for t, amps in self.trace:
            if t < since:
                continue
            if amps > limit + 1e-6 and began is None:
                began = t
            elif amps <= limit + 1e-6 and began is not None:
                spans.append(t - began)
                began = None
        if began is not None:
            spans.append(self.trace[-1][0] - began)
        return spans

    def now(self) -> float:
        return self.trace[-1][0] if self.trace else 0.0


@asynccontextmanager
async def plant_running(
    start_site: StartSite,
    tmp_path: Path,
    versions: list[str],
    extra: str = "",
    fallback_after_s: float = 30.0,
    **station: Any,
) -> AsyncIterator[tuple[Plant, Daemon, list[SimCharger]]]:
    meter = SimMeter(load_profile("eastron-sdm630"))
    bus = SimBus([meter])
    port = await bus.serve_tcp()
    plant = Plant(meter)
    feeder = asyncio.create_task(plant.feed())
    site = await start_site(load_toml(port, extra, fallback_after_s))
    defaults = {"ramp_s": RAMP, "meter_interval_s": 1, **station}
    chargers = [
        SimCharger(SimStation(**{**defaults, "id": f"LB{i}", "version": v}), site.url)
        for i, v in enumerate(versions)
    ]
    plant.chargers = chargers
    runners = [asyncio.create_task(c.run()) for c in chargers]
    try:
        await asyncio.gather(*(c.wait_connected() for c in chargers))
        yield plant, site.daemon, chargers
    finally:
        for c in chargers:
            await c.close()
        for task in (*runners, feeder):
            task.cancel()
        await asyncio.gather(*runners, feeder, return_exceptions=True)
        await bus.stop()


settle_until = functools.partial(until, timeout=8.0, what="the site did not settle")


def limits(chargers: list[SimCharger]) -> list[float]:
    return [c.limit_a[1] for c in chargers]


async def status(daemon: Daemon) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{daemon.api_port}/api/v1/status") as resp,
    ):
        return await resp.json()


async def test_the_site_stays_under_its_limit_through_steps_sessions_and_a_dead_meter(
    start_site: StartSite, tmp_path: Path
) -> None:
    versions = ["1.6", "2.0.1", "2.1", "2.0.1"]
    async with plant_running(start_site, tmp_path, versions) as (plant, daemon, chargers):
        cap = GRID_LIMIT - MARGIN
        # Idle connectors are held at 0 A; two sessions share 38 - 10 = 28 A.
        await settle_until(lambda: limits(chargers) == [0.0] * 4)
        for c in chargers[:2]:
            await c.start(1, "CARD")
        await settle_until(lambda: limits(chargers)[:2] == [14.0, 14.0])
        await settle_until(lambda: max(plant.currents()) > cap - 1.0)
        # ... and have reported it: until then a rise of the import could be their own
        # ramp (edge/state/load_view.py `unsettled_max_a`), and a step would show only then.
        await settle_until(lambda: reported(daemon, chargers[:2], 13.0))

        # The building jumps by 12 A: the cars must give way at once.
        step = plant.now()
        plant.building = [22.0, 22.0, 22.0]
        await settle_until(lambda: limits(chargers)[:2] == [8.0, 8.0])
        await asyncio.sleep(RAMP + 0.3)
        assert max(plant.currents()) <= cap + 1e-6

        # Two more sessions: 16 A of room, room for two at 6 A minimum: two pause.
        for c in chargers[2:]:
            await c.start(1, "CARD")
        await settle_until(lambda: sorted(limits(chargers)) == [0.0, 0.0, 8.0, 8.0])
        # They never had a limit above 0 A: nothing is written, `edge stations` says why.
        paused = [c.cfg.id for c in chargers if c.limit_a[1] == 0.0]
        await settle_until(
            lambda: all(
                daemon.registry.stations[s].limit_reason == "min-current pause" for s in paused
            )
        )

        # The building drops back: everybody gets a share again (after the dwell time).
        plant.building = [6.0, 6.0, 6.0]
        await settle_until(lambda: limits(chargers) == [8.0] * 4)

        # A session ends: its share goes to the others.
        await chargers[0].stop(1)
        await settle_until(lambda: limits(chargers)[1:] == [10.6] * 3)
        overloads = plant.overloads(since=step)
        assert max(overloads, default=0.0) <= PERIOD + RAMP + SLACK, overloads

        # The meter dies: the fail-safe current within stale_after_s + one period.
        died = time.monotonic()
        plant.meter.fault = "silent"
        await settle_until(lambda: max(limits(chargers)[1:]) <= FAILSAFE, timeout=5.0)
        took = time.monotonic() - died
        assert took <= STALE + PERIOD + SLACK + 0.5, took
        st = await status(daemon)
        assert st["load"]["failsafe"] is True
        assert st["load"]["load_unknown"] is True
        assert daemon.registry.stations["LB1"].limit_reason == "fail-safe"
        api = f"http://127.0.0.1:{daemon.api_port}"
        code, out = await edge_cli("status", "--api", api)
        assert code == 0 and "fail-safe ON" in out and "unknown: meter stale" in out, out
        code, out = await edge_cli("stations", "--api", api)
        assert code == 0 and "6 (fail-safe)" in out, out

        # It comes back: the loop takes over again.
        plant.meter.fault = None
        await settle_until(
            lambda: (daemon.load is not None) and not daemon.load.status()["failsafe"]
        )
        print(
            f"\nclosed loop: longest overload {max(overloads, default=0.0):.2f} s "
            f"(bound {PERIOD + RAMP:.2f} s + {SLACK:.2f} s slack), fail-safe after {took:.2f} s"
        )

    # Every change the chargers accepted is journaled and queued for the cloud.
    db = sqlite3.connect(daemon.config.store.path)
    changes = limit_changes(daemon)
    assert {c["station"] for c in changes} == {"LB0", "LB1", "LB2", "LB3"}
    assert {"fail-safe", "fair share", "idle"} <= {c["reason"] for c in changes}
    journal = db.execute("SELECT count(*) FROM events WHERE type = 'load.limit.changed'")
    assert journal.fetchone()[0] == len(changes)


def reported(daemon: Daemon, chargers: list[SimCharger], over_a: float) -> bool:
    """Whether each charger's last report says its car draws more than `over_a`."""
    for c in chargers:
        amps = daemon.registry.stations[c.cfg.id].phase_current_a
        if amps is None or amps[0] is None or amps[0] <= over_a:
            return False
    return True


def limit_changes(daemon: Daemon) -> list[dict[str, Any]]:
    """Every limit a charger accepted, in order, as journaled for the cloud."""
    db = sqlite3.connect(daemon.config.store.path)
    try:
        rows = db.execute(
            "SELECT data FROM outbox WHERE type = 'load.limit.changed' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [orjson.loads(r[0]) for r in rows]


async def charge_at_share(
    daemon: Daemon, chargers: list[SimCharger], hold_s: float
) -> list[dict[str, Any]]:
    """Start a session on each of two chargers: both settle at 14 A, report drawing it
    and keep it `hold_s`, and nobody was paused on the way. The limit changes so far."""
    for c in chargers:
        await c.start(1, "CARD")
    await settle_until(lambda: limits(chargers) == [14.0, 14.0])
    await settle_until(lambda: reported(daemon, chargers, 13.0))
    await asyncio.sleep(hold_s)
    assert limits(chargers) == [14.0, 14.0]
    changes = limit_changes(daemon)
    assert not [c for c in changes if c["reason"] == "min-current pause"], changes
    return changes


async def test_the_cars_own_ramps_are_not_taken_for_building_load(
    start_site: StartSite, tmp_path: Path
) -> None:
    """While a car follows a new limit, the grid meter and its reports disagree. After an
    increase the meter sees the car take its new limit before the charger reports it;
    after a reduction it still sees the old draw. Taken as building load, an increase
    paused the session again at the next cycle, and a reduction fed on itself until
    every session was paused."""
    async with plant_running(start_site, tmp_path, ["1.6", "2.0.1"]) as (plant, daemon, chargers):
        started = await charge_at_share(daemon, chargers, hold_s=1.0)

        plant.building = [22.0, 22.0, 22.0]  # 38 - 22 = 16 A of room: 8 A each
        await settle_until(lambda: limits(chargers) == [8.0, 8.0])
        # The cars ramp down, report their new draw, the meter sees it: nothing more moves.
        await asyncio.sleep(RAMP + 1.5)
        assert limits(chargers) == [8.0, 8.0]
        after = limit_changes(daemon)[len(started) :]
        assert sorted((c["station"], c["limit_a"]) for c in after) == [
            ("LB0", 8.0),
            ("LB1", 8.0),
        ], after


async def test_chargers_that_sample_only_energy_are_balanced_without_pauses(
    start_site: StartSite, tmp_path: Path
) -> None:
    """Factory settings of many chargers: the energy register only, once a minute. Their
    cars' draw then counted as building load, and each session's limit chased its own
    draw: paused, resumed after dwell_s, paused again. Edge has them report Current.Import
    (here every second, to keep the test short) and the sessions settle at their share."""
    factory: dict[str, Any] = {
        "measurands": "Energy.Active.Import.Register",
        "meter_interval_s": 60,
    }
    extra = "meter_values_interval_s = 1\n"
    versions = ["1.6", "2.0.1"]
    async with plant_running(start_site, tmp_path, versions, extra, **factory) as running:
        _, daemon, chargers = running
        # Ten times dwell_s: a session chasing its own draw would have been paused by now.
        await charge_at_share(daemon, chargers, hold_s=5.0)


async def test_a_charger_gets_a_station_max_profile_and_falls_back_by_itself(
    start_site: StartSite, tmp_path: Path
) -> None:
    async with plant_running(start_site, tmp_path, ["1.6"], fallback_after_s=1.5) as running:
        _, daemon, (charger,) = running
        await settle_until(
            lambda: any(p.purpose == "ChargePointMaxProfile" for p in charger.profiles)
        )
        station_max = next(p for p in charger.profiles if p.purpose == "ChargePointMaxProfile")
        # its own 32 A: below the grid limit less the margin (38 A)
        assert station_max.periods[0].limit_a == 32.0
        await charger.start(1, "CARD")
        await settle_until(lambda: charger.limit_a[1] == 28.0)
        tx_default = next(p for p in charger.profiles if p.purpose == "TxDefaultProfile")
        # The second period, fallback_after_s after it was written: the fail-safe current
        # or the static share, whichever is lower. The test site has 7 stations configured:
        # 38 A / 7 = 5.4 A is below the 6 A minimum, so the fall-back is a pause.
        assert daemon.load is not None and daemon.load.fallback_level_a() == 0.0
        assert [(p.start_s, p.limit_a) for p in tx_default.periods] == [(0.0, 28.0), (2.0, 0.0)]
        # edge keeps rewriting it, so while it runs the charger keeps its share
        await asyncio.sleep(2.0)
        assert charger.limit_a[1] == 28.0
        # edge stops (as if it crashed): the charger drops to the fail-safe by itself
        await daemon.stop()
        await asyncio.sleep(2.2)
        assert charger.limit_a[1] == 0.0


async def test_an_operator_limit_is_a_cap_the_balancer_keeps(
    start_site: StartSite, tmp_path: Path
) -> None:
    async with plant_running(start_site, tmp_path, ["2.0.1"]) as (_, daemon, (charger,)):
        await charger.start(1, "CARD")
        await settle_until(lambda: charger.limit_a[1] == 28.0)
        api = f"http://127.0.0.1:{daemon.api_port}"
        code, out = await edge_cli("station", "LB0", "limit", "10", "--api", api)
        assert code == 0 and "capped at 10 A by load balancing" in out, out
        await settle_until(lambda: charger.limit_a[1] == 10.0)
        assert daemon.registry.stations["LB0"].limit_reason == "operator limit"
        code, out = await edge_cli("station", "LB0", "limit", "5000", "--watts", "--api", api)
        assert code != 0 and "give the limit in A" in out, out
        code, out = await edge_cli("station", "LB0", "clear-limit", "--api", api)
        assert code == 0 and "cap lifted" in out, out
        await settle_until(lambda: charger.limit_a[1] == 28.0)


async def test_a_charger_that_rejects_amps_is_retried_in_watts(
    start_site: StartSite, tmp_path: Path
) -> None:
    meter = SimMeter(load_profile("eastron-sdm630"))
    meter.set(current_l1=5.0, current_l2=5.0, current_l3=5.0, voltage_l1=230.0)
    bus = SimBus([meter])
    port = await bus.serve_tcp()
    try:
        site = await start_site(load_toml(port))
        cfg = SimStation(id="LB0", version="2.0.1", profile_units=("W",), meter_interval_s=0)
        charger = SimCharger(cfg, site.url)
        runner = asyncio.create_task(charger.run())
        await charger.wait_connected()
        await charger.start(1, "CARD")
        # 38 - 5 = 33 A of room, capped at the station's 32 A: sent as 32 x 230 x 3 W
        await settle_until(lambda: charger.limit_a[1] == 32.0)
        setter = [p for a, p in charger.received if a == "SetChargingProfile"]
        units = [p["chargingProfile"]["chargingSchedule"][0]["chargingRateUnit"] for p in setter]
        assert "A" in units and units[-1] == "W"
        last = setter[-1]["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
        assert last[0] == {"startPeriod": 0, "limit": 22080.0, "numberPhases": 3}
        await charger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    finally:
        await bus.stop()
