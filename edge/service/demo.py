"""`edge demo`: the daemon plus a simulated site on loopback, with a live status line."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog

from edge.config import Config
from edge.logs import configure as configure_logging
from edge.modbus.profile import load_profile
from edge.service.daemon import Daemon
from edge.sim.meter import SimBus, SimMeter

log = structlog.get_logger("edge.demo")

DEMO_VERSIONS = ("1.6", "2.0.1", "2.1")


def free_port(preferred: int) -> int:
    """`preferred` if it can be bound on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


DEMO_METER_PROFILE = "eastron-sdm630"
DEMO_GRID_LIMIT_A = 32.0


def demo_config(
    base: Config,
    stations: int,
    data_dir: Path,
    ocpp_port: int,
    api_port: int,
    meter_port: int | None = None,
) -> Config:
    """The user's config, bound to loopback, with SIM01..SIMnn as configured stations and,
    given its port, a simulated grid meter."""
    from edge.config import MeterConfig, StationConfig

    meters = []
    if meter_port is not None:
        meters = [
            MeterConfig(
                id="grid",
                role="grid",
                profile=DEMO_METER_PROFILE,
                transport="tcp",
                host="127.0.0.1",
                port=meter_port,
                unit=1,
            )
        ]

    sims = [
        StationConfig(id=f"SIM{i:02d}", bidirectional=(i == stations and stations > 2))
        for i in range(1, stations + 1)
    ]
    return base.model_copy(
        update={
            "ocpp": base.ocpp.model_copy(
                update={"host": "127.0.0.1", "port": ocpp_port, "security_profile": 0}
            ),
            "api": base.api.model_copy(update={"listen": f"127.0.0.1:{api_port}", "token": None}),
            "store": base.store.model_copy(update={"path": str(data_dir / "demo.sqlite")}),
            "stations": sims,
            "meters": meters,
            # a small connection, so that the chargers have to share it
            "load": base.load
            if base.load.grid_limit_a is not None
            else base.load.model_copy(update={"grid_limit_a": DEMO_GRID_LIMIT_A}),
            "uplink": base.uplink.model_copy(update={"mode": "none"}),
        }
    )


async def _status_lines(daemon: Daemon, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        assert daemon.backend is not None
        st = daemon.backend.status()
        load = st["load"]
        amps = "/".join(f"{a:.0f}" for a in load["import_a"] if a is not None)
        ev = "/".join(f"{a:.0f}" for a in load.get("ev_allocated_a") or [])
        print(
            f"[demo] stations {st['stations']['connected']}/{st['stations']['known']} connected, "
            f"{st['sessions']['active']} charging, grid {amps or '?'} A of "
            f"{load['grid_limit_a']:g} A, EVs allowed {ev or '?'} A"
            f"{' (fail-safe)' if load.get('failsafe') else ''}, "
            f"outbox {st['uplink']['backlog']} records",
            flush=True,
        )


def building_load_w(t: float) -> float:
    """A building's own load: a base, a slow swing (one 'day' per 10 minutes) and ripple."""
    return 4000.0 + 2500.0 * math.sin(2 * math.pi * t / 600.0) + 300.0 * math.sin(t / 7.0)


async def run_grid_meter(meter: SimMeter, ev_current_a: Callable[[], float]) -> None:
    """Feed the simulated grid meter: building load plus what the simulated chargers draw."""
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    imported = exported = 0.0
    while True:
        now = loop.time()
        t = now - start
        building = building_load_w(t) / 3  # per phase, W
        ev = ev_current_a() / 3  # the chargers report A summed over phases
        volts = [230.0 + 2.0 * math.sin(t / 11.0 + k) for k in range(3)]
        amps = [building / v + ev * (1.0 + 0.02 * k) for k, v in enumerate(volts)]
        watts = [v * a for v, a in zip(volts, amps, strict=True)]
        total = sum(watts)
        hours = (now - last) / 3600
        imported += max(total, 0.0) * hours
        exported += max(-total, 0.0) * hours
        last = now
        values = {f"voltage_l{k + 1}": volts[k] for k in range(3)}
        values |= {f"current_l{k + 1}": amps[k] for k in range(3)}
        values |= {f"power_l{k + 1}": watts[k] for k in range(3)}
        meter.set(
            **values,
            power=total,
            frequency=50.0 + 0.02 * math.sin(t / 5.0),
            import_wh=1_250_000.0 + imported,
            export_wh=35_000.0 + exported,
        )
        await asyncio.sleep(0.5)


async def demo(config: Config, stations: int, ocpp_port: int, api_port: int) -> None:
    """Run the daemon and the simulated chargers until Ctrl-C."""
    from edge.sim.fleet import run_fleet

    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        meter = SimMeter(load_profile(DEMO_METER_PROFILE))
        meter_bus = SimBus([meter])
        meter_port = await meter_bus.serve_tcp()
        cfg = demo_config(config, stations, Path(tmp), ocpp_port, api_port, meter_port)
        daemon = Daemon(cfg)
        await daemon.start()
        feeder = asyncio.create_task(run_grid_meter(meter, daemon.registry.ev_current_a))
        assert daemon.server is not None
        url = f"ws://127.0.0.1:{daemon.server.port}{cfg.ocpp.path}"
        api = f"http://127.0.0.1:{daemon.api_port}"
        print(
            f"\nedge demo: site '{cfg.site.id}' with {stations} simulated chargers "
            f"(OCPP {', '.join(DEMO_VERSIONS[: min(stations, 3)])})\n"
            f"  chargers connect to  {url}/<station-id>\n"
            f"  look with            edge status --api {api}\n"
            f"                       edge stations --api {api}\n"
            f"                       edge sessions --api {api}\n"
            f"                       edge meters --api {api}   (a simulated {DEMO_METER_PROFILE}"
            f" on 127.0.0.1:{meter_port})\n"
            f"  send a command       edge station SIM01 trigger Heartbeat --api {api}\n"
            f"  stop with Ctrl-C\n",
            flush=True,
        )
        stop = asyncio.Event()
        fleet = asyncio.create_task(
            run_fleet(
                url,
                stations=stations,
                versions=DEMO_VERSIONS,
                v2g=stations > 2,
                stop=stop,
                session_every_s=15.0,
            )
        )
        ticker = asyncio.create_task(_status_lines(daemon, 10.0))
        try:
            await asyncio.Event().wait()
        finally:
            stop.set()
            ticker.cancel()
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(fleet, 5)
            await daemon.stop()
            await meter_bus.stop()


def run_demo(config: Config, stations: int = 3, port: int | None = None) -> int:
    """Entry point of `edge demo`."""
    configure_logging("warning", "console")
    ocpp_port = free_port(port or config.ocpp.port)
    api_port = free_port(int(config.api.listen.rsplit(":", 1)[1]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(config, stations, ocpp_port, api_port))
    return 0
