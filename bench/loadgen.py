"""A cheap OCPP-J load generator: raw websockets + orjson, many stations in one process.

Runs one scenario against a central system and prints one JSON line of figures.
Scenarios: boot, mv16 (saturated 1.6 MeterValues), te201 (saturated 2.0.1
TransactionEvent Updated), latency (open loop, `--rate` msgs/s per station), idle
(connect, boot, hold until stdin closes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

# The time in every message, taken once: a fixed date long past made edge name each
# station's clock as wrong (ocpp.clock.off), a thousand log lines per scenario.
TS = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Station:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for data in self.ws:
            frame = orjson.loads(data)
            fut = self.waiting.pop(frame[1], None)
            if fut is not None:
                fut.set_result(frame)

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        uid = str(next(self.ids))
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting[uid] = fut
        await self.ws.send(orjson.dumps([2, uid, action, payload]).decode())
        frame = await fut
        if frame[0] != 3:
            raise RuntimeError(f"{action}: {frame}")
        return frame


def boot(version: str) -> dict[str, Any]:
    if version == "1.6":
        return {"chargePointVendor": "Bench", "chargePointModel": "B1"}
    return {"reason": "PowerUp", "chargingStation": {"vendorName": "Bench", "model": "B2"}}


def meter_16(tx: int, n: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [
            {
                "timestamp": TS,
                "sampledValue": [
                    {
                        "value": str(1000 + n),
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    },
                    {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                ],
            }
        ],
    }


def event_201(tx: str, seq: int, kind: str = "Updated") -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": TS,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": TS,
                "sampledValue": [
                    {"value": 1000.0 + seq, "measurand": "Energy.Active.Import.Register"}
                ],
            }
        ],
    }


async def open_station(url: str, sid: str, version: str, compression: bool) -> Station:
    ws = await connect(
        f"{url}/{sid}",
        subprotocols=[f"ocpp{version}"],  # type: ignore[list-item]
        compression="deflate" if compression else None,
        ping_interval=None,
        open_timeout=60,
        max_queue=4,
    )
    st = Station(ws)
    await st.call("BootNotification", boot(version))
    return st


async def fleet(args: argparse.Namespace, version: str) -> tuple[list[Station], float]:
    started = time.perf_counter()
    sem = asyncio.Semaphore(200)  # don't SYN-flood the listen backlog

    async def one(i: int) -> Station:
        async with sem:
            return await open_station(args.url, f"{args.prefix}{i:05d}", version, args.compression)

    stations = await asyncio.gather(*(one(i) for i in range(args.stations)))
    return list(stations), time.perf_counter() - started


async def saturate(stations: list[Station], step: Any, seconds: float) -> int:
    count = 0
    stop = time.perf_counter() + seconds

    async def loop(st: Station, i: int) -> None:
        nonlocal count
        n = 0
        while time.perf_counter() < stop:
            n += 1
            await st.call(*step(i, n))
            count += 1

    await asyncio.gather(*(loop(st, i) for i, st in enumerate(stations)))
    return count


async def measured(stations: list[Station], step: Any, seconds: float) -> dict[str, float]:
    """A saturated window, marked on stdout (`{"window": "start"}` / `"end"`) so that the
    bench can read the server's CPU over exactly that window; the generator's own CPU per
    message is part of the figures (it shares the machine with the server)."""
    print(orjson.dumps({"window": "start"}).decode(), flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    count = await saturate(stations, step, seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(orjson.dumps({"window": "end"}).decode(), flush=True)
    return {
        "msgs_per_s": round(count / wall, 1),
        "generator_cpu_us_per_msg": round(cpu / max(count, 1) * 1e6, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    version = "2.0.1" if args.scenario == "te201" else "1.6"
    stations, boot_s = await fleet(args, version)
    out: dict[str, Any] = {
        "scenario": args.scenario,
        "stations": len(stations),
        "boot_s": round(boot_s, 3),
    }
    if args.scenario in ("mv16", "latency"):
        txs = [
            (
                await st.call(
                    "StartTransaction",
                    {"connectorId": 1, "idTag": "B", "meterStart": 0, "timestamp": TS},
                )
            )[2]["transactionId"]
            for st in stations
        ]
    if args.scenario == "mv16":
        await saturate(stations, lambda i, n: ("MeterValues", meter_16(txs[i], n)), 1.0)  # warm
        out.update(
            await measured(
                stations, lambda i, n: ("MeterValues", meter_16(txs[i], n)), args.duration
            )
        )
    elif args.scenario == "te201":
        ids = [f"TX{i}" for i in range(len(stations))]
        for st, tx in zip(stations, ids, strict=True):
            await st.call("TransactionEvent", event_201(tx, 0, "Started"))
        seqs = [1] * len(stations)

        def step(i: int, n: int) -> tuple[str, dict[str, Any]]:
            seqs[i] += 1
            return "TransactionEvent", event_201(ids[i], seqs[i])

        await saturate(stations, step, 1.0)
        out.update(await measured(stations, step, args.duration))
    elif args.scenario == "latency":
        out.update(await open_loop(stations, txs, args.rate, args.duration))
    elif args.scenario == "idle":
        print(orjson.dumps({**out, "ready": True}).decode(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for st in stations:
        await st.ws.close()
    return out


async def open_loop(
    stations: list[Station], txs: list[int], rate: float, seconds: float
) -> dict[str, Any]:
    """Each station sends `rate` msgs/s, phases spread evenly; round trips measured."""
    rtts: list[float] = []
    period = 1.0 / rate
    start = time.perf_counter() + 0.5
    late = 0

    async def run(i: int, st: Station) -> None:
        nonlocal late
        t = start + period * i / len(stations)
        n = 0
        while t < start + seconds:
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late += 1
            n += 1
            sent = time.perf_counter()
            await st.call("MeterValues", meter_16(txs[i], n))
            rtts.append(time.perf_counter() - sent)
            t += period

    await asyncio.gather(*(run(i, st) for i, st in enumerate(stations)))
    rtts.sort()

    def pick(q: float) -> float:
        return round(rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000, 2)

    return {
        "rate_per_station": rate,
        "messages": len(rtts),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(rtts[-1] * 1000, 2),
        "late_sends": late,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument(
        "--scenario", choices=["boot", "mv16", "te201", "latency", "idle"], required=True
    )
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--prefix", default="B")
    p.add_argument("--compression", action="store_true")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(orjson.dumps(asyncio.run(main(a))).decode(), flush=True)
