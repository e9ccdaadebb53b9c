"""`edge demo`: the daemon plus a simulated site on loopback, with a live status line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from pathlib import Path

import structlog

from edge.config import Config
from edge.logs import configure as configure_logging
from edge.service.daemon import Daemon

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


def demo_config(
    base: Config, stations: int, data_dir: Path, ocpp_port: int, api_port: int
) -> Config:
    """The user's config, bound to loopback, with SIM01..SIMnn as configured stations."""
    from edge.config import StationConfig

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
            "uplink": base.uplink.model_copy(update={"mode": "none"}),
        }
    )


async def _status_lines(daemon: Daemon, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        assert daemon.backend is not None
        st = daemon.backend.status()
        print(
            f"[demo] stations {st['stations']['connected']}/{st['stations']['known']} connected, "
            f"{st['sessions']['active']} charging, outbox {st['uplink']['backlog']} records",
            flush=True,
        )


async def demo(config: Config, stations: int, ocpp_port: int, api_port: int) -> None:
    """Run the daemon and the simulated chargers until Ctrl-C."""
    from edge.sim.fleet import run_fleet

    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        cfg = demo_config(config, stations, Path(tmp), ocpp_port, api_port)
        daemon = Daemon(cfg)
        await daemon.start()
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
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(fleet, 5)
            await daemon.stop()


def run_demo(config: Config, stations: int = 3, port: int | None = None) -> int:
    """Entry point of `edge demo`."""
    configure_logging("warning", "console")
    ocpp_port = free_port(port or config.ocpp.port)
    api_port = free_port(int(config.api.listen.rsplit(":", 1)[1]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(demo(config, stations, ocpp_port, api_port))
    return 0
