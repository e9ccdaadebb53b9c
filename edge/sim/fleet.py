"""Many simulated stations: scripted sessions for demos, or an interactive console."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Sequence

from edge.sim.charger import CallFailed, SimCharger, SimStation

HELP = (
    "commands: start [STATION] [CONNECTOR] [TAG] | stop [STATION] [CONNECTOR] | "
    "status STATION CONNECTOR STATUS | meter STATION WH | heartbeat [STATION] | list | quit"
)


def fleet_stations(
    stations: int, versions: Sequence[str], v2g: bool, prefix: str = "SIM"
) -> list[SimStation]:
    """SIM01, SIM02, ...: versions round-robin; with v2g the last one is bidirectional."""
    out = []
    for i in range(1, stations + 1):
        bidi = v2g and i == stations
        out.append(
            SimStation(
                id=f"{prefix}{i:02d}",
                version=versions[(i - 1) % len(versions)],
                v2g=bidi,
                meter_interval_s=10.0,
            )
        )
    return out


def _say(line: str) -> None:
    print(line, flush=True)


async def _scripted(charger: SimCharger, rnd: random.Random, every_s: float) -> None:
    """Plug in, charge for a while, stop, rest; forever."""
    await charger.wait_connected(timeout=60)
    await asyncio.sleep(rnd.uniform(0, every_s / 2))
    while True:
        try:
            await charger.plug_in(1)
            tx = await charger.start(1, f"TAG{rnd.randint(100, 999)}")
            if tx is not None:
                if charger.cfg.v2g:
                    await asyncio.sleep(rnd.uniform(every_s / 2, every_s))
                    charger.connectors[1].discharge_a = 10.0  # a V2G discharge phase
                    charger._integrate(charger.connectors[1])
                await asyncio.sleep(rnd.uniform(every_s, every_s * 3))
                await charger.stop(1, rnd.choice(["Local", "EVDisconnected"]))
        except CallFailed:
            await charger.wait_connected(timeout=120)
        await asyncio.sleep(rnd.uniform(every_s / 2, every_s))


async def _console(chargers: dict[str, SimCharger], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    # Commands typed (or piped) before the stations are up would only fail.
    await asyncio.gather(*(c.wait_connected(30) for c in chargers.values()), return_exceptions=True)
    _say(HELP)
    while not stop.is_set():
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            stop.set()
            return
        try:
            await _command(line.split(), chargers, stop)
        except (CallFailed, KeyError, ValueError, IndexError) as exc:
            _say(f"error: {exc}")


def _pick(words: list[str], chargers: dict[str, SimCharger]) -> tuple[SimCharger, list[str]]:
    if words and words[0] in chargers:
        return chargers[words[0]], words[1:]
    if len(chargers) == 1:
        return next(iter(chargers.values())), words
    raise KeyError(f"name a station: {', '.join(chargers)}")


async def _command(words: list[str], chargers: dict[str, SimCharger], stop: asyncio.Event) -> None:
    if not words:
        return
    verb, rest = words[0].lower(), words[1:]
    if verb in ("quit", "exit"):
        stop.set()
    elif verb == "help":
        _say(HELP)
    elif verb == "list":
        for c in chargers.values():
            conns = " ".join(f"{k}:{v.status}/{c.draw_a(k):.1f}A" for k, v in c.connectors.items())
            _say(f"{c.cfg.id} OCPP {c.cfg.version} {'up' if c.connected else 'down'} {conns}")
    elif verb == "start":
        charger, args = _pick(rest, chargers)
        connector = int(args[0]) if args else 1
        await charger.plug_in(connector)
        await charger.start(connector, args[1] if len(args) > 1 else "SIMTAG")
    elif verb == "stop":
        charger, args = _pick(rest, chargers)
        await charger.stop(int(args[0]) if args else 1)
    elif verb == "status":
        charger, args = _pick(rest, chargers)
        await charger.set_status(int(args[0]), args[1])
    elif verb == "meter":
        charger, args = _pick(rest, chargers)
        await charger.send_meter(1, float(args[0]))
    elif verb == "heartbeat":
        charger, _ = _pick(rest, chargers)
        await charger.heartbeat()
    else:
        _say(f"unknown command {verb!r}; {HELP}")


async def run_fleet(
    url: str,
    *,
    stations: int = 3,
    versions: Sequence[str] = ("1.6", "2.0.1", "2.1"),
    v2g: bool = False,
    prefix: str = "SIM",
    password: str | None = None,
    session_every_s: float = 20.0,
    interactive: bool = False,
    stop: asyncio.Event | None = None,
    seed: int = 0,
) -> None:
    """Run simulated stations against `url` until `stop` is set (or `quit`)."""
    stop = stop or asyncio.Event()
    rnd = random.Random(seed)
    chargers = {}
    for cfg in fleet_stations(stations, versions, v2g, prefix):
        cfg.password = password
        chargers[cfg.id] = SimCharger(cfg, url, say=_say, seed=seed)
    tasks = [asyncio.create_task(c.run()) for c in chargers.values()]
    if interactive:
        tasks.append(asyncio.create_task(_console(chargers, stop)))
    else:
        tasks += [
            asyncio.create_task(_scripted(c, random.Random(rnd.random()), session_every_s))
            for c in chargers.values()
        ]
    try:
        await stop.wait()
    finally:
        for c in chargers.values():
            await c.close()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
