"""Modbus poll bench: poller CPU for 10 TCP meters, and one SDM630 read over RTU at 9600 baud.

(a) Ten simulated SDM630 meters, each its own Modbus TCP endpoint, served by pymodbus in a
    separate process. edge's pollers read them at 1 Hz; the figure is this process's CPU as
    a share of one core (target < 2 %). Baseline in the same run: the usual naive poller,
    one pymodbus request per quantity, decoded with pymodbus' own converter.
(b) One full SDM630 read over RTU at 9600 baud 8N1 through a pseudo-terminal line that
    carries bytes no faster than the wire would (the server side lives in another process).
    The figure is wall time against the wire-time limit of the requests the read needs:
    request, 3.5 characters of silence, answer, 3.5 characters of silence (Modbus over
    Serial Line v1.02 §2.5.1.1). Target: within 20 % of that limit.

Figures go to stdout, bench/results/modbus_poll.json and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from common import HERE, machine, update_results_md

from edge.domain.site_meter import SiteMeterSample
from edge.modbus.bus import Bus, BusSettings
from edge.modbus.poller import MeterPoller, MeterReader
from edge.modbus.profile import MeterProfile, load_profile

PROFILE = "eastron-sdm630"
VALUES = {
    "voltage_l1": 231.2,
    "voltage_l2": 229.8,
    "voltage_l3": 230.6,
    "current_l1": 12.3,
    "current_l2": 8.1,
    "current_l3": 15.7,
    "power_l1": 2843.8,
    "power_l2": 1861.4,
    "power_l3": 3620.4,
    "power": 8325.6,
    "frequency": 50.01,
    "import_wh": 1_234_567.0,
    "export_wh": 45_678.0,
}


# -- the server side (a separate process) -----------------------------------------------


async def serve(kind: str, meters: int, profile_name: str) -> None:
    from edge.sim.meter import SimBus, SimMeter
    from edge.sim.serial_link import SerialLink

    profile = load_profile(profile_name)
    if kind == "tcp":
        ports = []
        for _ in range(meters):
            bus = SimBus([SimMeter(profile, values=VALUES)])
            ports.append(await bus.serve_tcp())
        print(json.dumps({"ports": ports}), flush=True)
    else:
        link = SerialLink(baudrate=9600)
        await SimBus([SimMeter(profile, values=VALUES)]).serve_serial(link.a, 9600)
        print(json.dumps({"device": link.b}), flush=True)
    await asyncio.Event().wait()


def start_server(
    kind: str, profile: str, meters: int = 1
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--meters", str(meters), "--profile", profile],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


# -- (a) CPU of polling ten TCP meters ----------------------------------------------------


class NaivePoller:
    """The baseline: one request per quantity, pymodbus' converter, no grouping."""

    def __init__(self, profile: MeterProfile, port: int) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
        self.quantities = profile.quantities

    async def read_once(self) -> dict[str, float]:
        if not self.client.connected:
            await self.client.connect()
        values: dict[str, float] = {}
        types = self.client.DATATYPE
        for q in self.quantities:
            call = (
                self.client.read_input_registers
                if q.function == 4
                else self.client.read_holding_registers
            )
            rr = await call(q.address, count=q.count, device_id=1)
            raw = self.client.convert_from_registers(
                rr.registers, getattr(types, q.type.upper()), word_order=q.word_order
            )
            values[q.name] = float(raw) * q.factor  # type: ignore[arg-type]
        return values


async def cpu_of(readers: list[Any], cycles: int, realtime_s: float) -> dict[str, float]:
    for r in readers:  # connect and warm up
        await r.read_once()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        await asyncio.gather(*(r.read_once() for r in readers))
    cpu_per_cycle = (time.process_time() - cpu0) / cycles
    wall_per_cycle = (time.perf_counter() - wall0) / cycles
    # the real thing: every meter on its own 1 Hz beat
    samples: list[SiteMeterSample] = []
    pollers = [
        MeterPoller(r, 1.0, samples.append, lambda *a: None)
        if isinstance(r, MeterReader)
        else _Beat(r)
        for r in readers
    ]
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(realtime_s)
    share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "cpu_ms_per_cycle": round(cpu_per_cycle * 1000, 3),
        "wall_ms_per_cycle": round(wall_per_cycle * 1000, 3),
        "cpu_percent_at_1hz": round(share * 100, 3),
    }


class _Beat:
    """A 1 Hz loop around the naive poller."""

    def __init__(self, reader: NaivePoller) -> None:
        self.reader = reader

    async def run(self) -> None:
        while True:
            await self.reader.read_once()
            await asyncio.sleep(1.0)


async def tcp_phase(args: argparse.Namespace) -> dict[str, Any]:
    profile = load_profile(args.profile)
    proc, info = start_server("tcp", args.profile, args.meters)
    try:
        ports = info["ports"]
        readers = [
            MeterReader(f"m{i}", profile, Bus(BusSettings("tcp", "127.0.0.1", port)), 1)
            for i, port in enumerate(ports)
        ]
        edge = await cpu_of(readers, args.cycles, args.seconds)
        edge["requests_per_read"] = len(readers[0].reads)
        naive = [NaivePoller(profile, port) for port in ports]
        baseline = await cpu_of(naive, args.cycles, args.seconds)
        baseline["requests_per_read"] = len(profile.quantities)
        for r in naive:
            r.client.close()
        for r in readers:
            await r.bus.close()
    finally:
        proc.kill()
    return {"meters": args.meters, "edge": edge, "baseline": baseline}


# -- (b) one SDM630 read over RTU at 9600 baud ------------------------------------------------


def wire_limit_s(reads: list[Any], settings: BusSettings) -> float:
    """Characters on the wire for the requests, plus the silences the protocol demands."""
    chars = 0.0
    for r in reads:
        request = 8  # unit, function, address (2), count (2), CRC (2)
        answer = 5 + 2 * r.count  # unit, function, byte count, data, CRC (2)
        chars += request + 3.5 + answer + 3.5
    return chars * settings.char_time_s


async def rtu_phase(args: argparse.Namespace) -> dict[str, Any]:
    profile = load_profile(args.profile)
    proc, info = start_server("rtu", args.profile)
    try:
        settings = BusSettings("rtu", device=info["device"], baudrate=9600, timeout_s=2.0)
        bus = Bus(settings)
        reader = MeterReader("sdm630", profile, bus, 1)
        await reader.read_once()
        times = []
        for _ in range(args.rtu_reads):
            t0 = time.perf_counter()
            values = await reader.read_once()
            times.append(time.perf_counter() - t0)
        assert abs(values["power"] - VALUES["power"]) < 0.1, values
        await bus.close()
    finally:
        proc.kill()
    limit = wire_limit_s(reader.reads, settings)
    median = statistics.median(times)
    return {
        "requests": len(reader.reads),
        "registers": sum(r.count for r in reader.reads),
        "wall_ms_median": round(median * 1000, 1),
        "wall_ms_max": round(max(times) * 1000, 1),
        "wire_limit_ms": round(limit * 1000, 1),
        "ratio": round(median / limit, 3),
        "naive_requests": len(profile.quantities),
        "naive_wire_limit_ms": round(
            wire_limit_s([type("R", (), {"count": q.count}) for q in profile.quantities], settings)
            * 1000,
            1,
        ),
    }


def report(r: dict[str, Any]) -> None:
    out = HERE / "results" / "modbus_poll.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    t, u = r["tcp"], r["rtu"]
    e, b = t["edge"], t["baseline"]
    cpu_ok = e["cpu_percent_at_1hz"] < 2.0
    rtu_ok = u["ratio"] <= 1.2
    lines = [
        f"Run {r['time']} on {r['machine']['cpus']} x {r['machine']['cpu']}, "
        f"Python {r['machine']['python']}; simulated {PROFILE} meters (pymodbus servers in "
        "another process).",
        "",
        f"| figure ({t['meters']} meters over Modbus TCP) | baseline (a request per quantity) "
        "| edge (grouped reads) |",
        "|---|---|---|",
        f"| requests per meter read | {b['requests_per_read']} | {e['requests_per_read']} |",
        f"| CPU per poll cycle of all meters | {b['cpu_ms_per_cycle']} ms "
        f"| {e['cpu_ms_per_cycle']} ms |",
        f"| wall time per poll cycle | {b['wall_ms_per_cycle']} ms | {e['wall_ms_per_cycle']} ms |",
        f"| CPU share of one core at 1 Hz per meter | {b['cpu_percent_at_1hz']} % "
        f"| {e['cpu_percent_at_1hz']} % |",
        "",
        f"One SDM630 read over RTU, 9600 baud 8N1, paced pty line: {u['requests']} requests, "
        f"{u['registers']} registers; wall time median {u['wall_ms_median']} ms "
        f"(max {u['wall_ms_max']} ms) against a wire-time limit of {u['wire_limit_ms']} ms "
        f"(ratio {u['ratio']}). A request per quantity would need {u['naive_requests']} "
        f"requests and at least {u['naive_wire_limit_ms']} ms.",
        "",
        "| target | measured | goal | met |",
        "|---|---|---|---|",
        f"| poller CPU, 10 TCP meters at 1 Hz | {e['cpu_percent_at_1hz']} % of one core "
        f"| < 2 % | {'yes' if cpu_ok else 'NO'} |",
        f"| SDM630 read over RTU at 9600 baud | {u['ratio']} x wire time | <= 1.2 x "
        f"| {'yes' if rtu_ok else 'NO'} |",
    ]
    body = "\n".join(lines)
    print(body)
    update_results_md("modbus_poll", "`bench/modbus_poll.py`: site meters over Modbus", body)


async def run(args: argparse.Namespace) -> None:
    result = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "tcp": await tcp_phase(args),
        "rtu": await rtu_phase(args),
    }
    report(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--profile", default=PROFILE, help="a meter profile with SDM630 values")
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rtu-reads", type=int, default=10)
    parser.add_argument("--serve", choices=["tcp", "rtu"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.meters, args.profile))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
