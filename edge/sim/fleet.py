"""Many simulated stations in one event loop: scripted sessions for demos, or a console."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import Sequence

from edge.sim.charger import CallFailed, SimCharger, SimStation

HELP = (
    "commands: start [STATION] [CONNECTOR] [TAG] | stop [STATION] [CONNECTOR] | "
    "status STATION CONNECTOR STATUS | meter STATION WH | heartbeat [STATION] | list | help | quit"
)


def fleet_stations(
    stations: int, versions: Sequence[str], v2g: bool, prefix: str = "SIM"
) -> list[SimStation]:
    """SIM01, SIM02, ...: versions round-robin; with v2g the last one is bidirectional."""
    return [
        SimStation(
            id=f"{prefix}{i:02d}",
            version=versions[(i - 1) % len(versions)],
            v2g=v2g and i == stations,
        )
        for i in range(1, stations + 1)
    ]


def say(line: str) -> None:
    """One line per event on stdout."""
    print(line, flush=True)


async def _online(charger: SimCharger) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await charger.wait_connected(timeout=60)
            return


async def _scripted(charger: SimCharger, rnd: random.Random, every_s: float) -> None:
    """Plug in, charge (V2G stations also feed back for a while), stop, rest; forever."""
    await _online(charger)
    await asyncio.sleep(rnd.uniform(0, every_s / 2))  # stations do not all start at once
    while True:
        try:
            await charger.plug_in(1)
            if await charger.start(1, f"TAG{rnd.randint(1000, 9999)}") is not None:
                await _charge(charger, rnd, every_s)
                await charger.stop(1, rnd.choice(["Local", "EVDisconnected"]))
        except CallFailed:
            await _online(charger)
        await asyncio.sleep(rnd.uniform(every_s / 2, every_s))


async def _charge(charger: SimCharger, rnd: random.Random, every_s: float) -> None:
    duration = rnd.uniform(every_s, every_s * 3)
    if not charger.cfg.v2g or rnd.random() < 0.3:
        await asyncio.sleep(duration)
        return
    await asyncio.sleep(duration / 3)
    amps = round(rnd.uniform(6, 16), 1)
    await charger.discharge(1, amps)
    say(f"{charger.cfg.id}: discharging {amps} A per phase")
    await asyncio.sleep(duration / 3)
    await charger.discharge(1, 0)
    say(f"{charger.cfg.id}: discharge ended")
    await asyncio.sleep(duration / 3)


def _read_stdin(queue: asyncio.Queue[str | None]) -> None:
    """Feed stdin lines to `queue` (None at the end) without blocking the loop."""
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        queue.put_nowait(None)
        return
    pending = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 4096)
        pending.extend(chunk)
        *lines, rest = pending.split(b"\n")
        pending[:] = rest
        for line in lines:
            queue.put_nowait(line.decode(errors="replace"))
        if not chunk:
            loop.remove_reader(fd)
            if pending:
                queue.put_nowait(pending.decode(errors="replace"))
            queue.put_nowait(None)

    try:
        # Watching the descriptor keeps it blocking, so stdout on the same tty is unaffected.
        loop.add_reader(fd, readable)
    except (PermissionError, OSError, ValueError, NotImplementedError):
        # A regular file cannot be watched (epoll refuses it) but never blocks either.
        for line in sys.stdin.read().splitlines():
            queue.put_nowait(line)
        queue.put_nowait(None)


async def _console(chargers: dict[str, SimCharger], stop: asyncio.Event) -> None:
    # Commands typed (or piped) before the stations are up would only fail.
    await asyncio.gather(*(c.wait_connected(30) for c in chargers.values()), return_exceptions=True)
    say(HELP)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    _read_stdin(queue)
    while not stop.is_set():
        line = await queue.get()
        if line is None:
            break
        try:
            await _command(line.split(), chargers, stop)
        except (CallFailed, KeyError, ValueError, IndexError) as exc:
            say(f"error: {exc}")
    stop.set()


def _pick(words: list[str], chargers: dict[str, SimCharger]) -> tuple[SimCharger, list[str]]:
    if words and words[0] in chargers:
        return chargers[words[0]], words[1:]
    if len(chargers) == 1:
        return next(iter(chargers.values())), words
    raise KeyError(f"name a station: {', '.join(chargers)}")


def _listing(chargers: dict[str, SimCharger]) -> None:
    for c in chargers.values():
        conns = " ".join(
            f"{k}:{v.status}/{c.draw_a(k):.1f}A/{v.energy_wh / 1000:.1f}kWh"
            for k, v in c.connectors.items()
        )
        say(f"{c.cfg.id} OCPP {c.cfg.version} {'up' if c.connected else 'down'} {conns}")


async def _command(words: list[str], chargers: dict[str, SimCharger], stop: asyncio.Event) -> None:
    """Run one console command."""
    if not words:
        return
    verb, rest = words[0].lower(), words[1:]
    if verb in ("quit", "exit"):
        stop.set()
    elif verb == "help":
        say(HELP)
    elif verb == "list":
        _listing(chargers)
    elif verb in ("start", "stop", "status", "meter", "heartbeat"):
        charger, args = _pick(rest, chargers)
        await _station_command(verb, charger, args)
    else:
        say(f"unknown command {verb!r}; {HELP}")


async def _station_command(verb: str, charger: SimCharger, args: list[str]) -> None:
    name = charger.cfg.id
    if verb == "start":
        connector = int(args[0]) if args else 1
        await charger.plug_in(connector)
        if await charger.start(connector, args[1] if len(args) > 1 else "SIMTAG") is None:
            say(f"{name}: session refused on connector {connector}")
    elif verb == "stop":
        connector = int(args[0]) if args else 1
        if charger.connectors[connector].transaction is None:
            say(f"{name}: no session on connector {connector}")
        await charger.stop(connector)
    elif verb == "status":
        await charger.set_status(int(args[0]), args[1])
        say(f"{name}: connector {args[0]} status {args[1]}")
    elif verb == "meter":
        await charger.send_meter(1, float(args[0]))
        say(f"{name}: meter {charger.connectors[1].energy_wh:.0f} Wh sent")
    else:
        await charger.heartbeat()
        say(f"{name}: heartbeat")


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
        chargers[cfg.id] = SimCharger(cfg, url, say=say, seed=seed)
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
        await asyncio.gather(*(c.close() for c in chargers.values()), return_exceptions=True)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
