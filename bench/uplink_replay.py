"""Replay of an outbox backlog to a local mosquitto over the MQTT uplink.

A backlog of `--records` meter.values records from `--stations` stations (as an outage
leaves it) is written to a fresh store; then, in the same run:
- baseline: a per-record loop (publish, await the PUBACK, delete the row, commit);
- edge: `edge.uplink.mqtt.MqttUplink` (batches published back to back, one delete per
  acknowledged batch through the group-committing writer).
Both go to the same mosquitto (started here on a free port) with a subscriber counting
what arrives; the figure is records per second until the outbox is empty and every
record has arrived. Then a 1.6 backlog goes over the OCPP uplink to a cloud CSMS written
with the `ocpp` library, and the local-CSMS load generator measures what the MQTT uplink
costs `edge run` while it drains as it goes.

Figures go to stdout, bench/results/uplink_replay.json and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import HERE, free_port, machine, update_results_md
from edge.logs import configure as configure_logging
from edge.store import outbox
from edge.store.journal import enqueue
from edge.store.schema import migrate
from edge.store.writer import Store
from edge.uplink import topics
from edge.uplink.mqtt import BrokerSettings, MqttUplink, store_access

TARGET = 5000.0


def make_backlog(path: Path, records: int, stations: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, path)
    now = datetime.now(UTC)
    conn.execute("BEGIN")
    for i in range(records):
        station = f"CP{i % stations:03d}"
        value = 1000.0 + i
        raw = {
            "connectorId": 1,
            "transactionId": 1 + i % stations,
            "meterValue": [
                {
                    "timestamp": "2026-12-03T08:00:00Z",
                    "sampledValue": [
                        {"value": str(value), "measurand": "Energy.Active.Import.Register"},
                        {"value": "7360.0", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "10.67", "measurand": "Current.Import", "phase": "L1"},
                    ],
                }
            ],
        }
        data = {"session_id": 1 + i % stations, "connector": 1, "energy_wh": value, "raw": raw}
        enqueue(conn, station, "meter.values", now, data, now, 1 + i % stations)
    conn.execute("COMMIT")
    conn.close()


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


async def subscriber(port: int, count: int) -> asyncio.subprocess.Process:
    """mosquitto_sub in its own process (the cloud is not on the gateway): exits after
    `count` messages."""
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-q",
        "1",
        "-i",
        "bench-cloud",
        "-t",
        "edge/bench/events/#",
        "-C",
        str(count),
        stdout=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)  # subscribed before the replay starts
    return proc


async def baseline(store: Store, port: int, site: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-baseline") as client:
        while True:
            rows = await store.read(lambda c: outbox.pending(c, 1))
            if not rows:
                return
            r = rows[0]
            await client.publish(
                topics.event_topic("edge", site, r.type), topics.envelope(r, site), qos=1
            )
            await store.write(lambda c, rid=r.id: outbox.delivered(c, [rid]))


async def edge_uplink(store: Store, port: int, site: str, total: int) -> None:
    read, ack = store_access(store)
    uplink = MqttUplink(
        BrokerSettings("127.0.0.1", port, site=site),
        read,
        ack,
        run_command=lambda *a: asyncio.sleep(0, {}),
        states=dict,
    )
    done = asyncio.Event()

    def delivered(_: int) -> None:
        if uplink.delivered >= total:
            done.set()

    uplink.on_delivered = delivered
    uplink.start()
    await done.wait()
    await uplink.stop()


async def phase(name: str, args: argparse.Namespace, broker: Broker, tmp: Path) -> dict[str, Any]:
    path = tmp / f"{name}.sqlite"
    make_backlog(path, args.records, args.stations)
    store = await Store.open(path, outbox_max_rows=args.records * 2)
    cloud = await subscriber(broker.port, args.records)
    t0 = time.perf_counter()
    if name == "baseline":
        await baseline(store, broker.port, "bench")
    else:
        await edge_uplink(store, broker.port, "bench", args.records)
    await asyncio.wait_for(cloud.wait(), 600)  # every record arrived
    seconds = time.perf_counter() - t0
    left = await store.read(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0])
    await store.close()
    rate = args.records / seconds
    print(f"{name}: {args.records} records in {seconds:.2f} s = {rate:.0f}/s", flush=True)
    return {"seconds": round(seconds, 2), "records_per_s": round(rate), "left": left}


def make_ocpp_backlog(path: Path, records: int, stations: int) -> None:
    """1.6 MeterValues of running sessions, as an outage leaves them in the outbox."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn, path)
    now = datetime.now(UTC)
    conn.execute("BEGIN")
    for i in range(records):
        raw = {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-12-03T08:00:00Z",
                    "sampledValue": [{"value": str(1000.0 + i)}],
                }
            ],
        }
        data = {"session_id": None, "connector": 1, "energy_wh": 1000.0 + i, "raw": raw}
        enqueue(conn, f"CP{i % stations:03d}", "meter.values", now, data, now)
    conn.execute("COMMIT")
    conn.close()


class Cloud16(ChargePoint16):
    """The cloud CSMS, written with the `ocpp` library; counts MeterValues."""

    received = 0
    target = 0
    done: asyncio.Event | None = None

    @on("BootNotification")
    def boot(self, **_: Any) -> Any:
        stamp = datetime.now(UTC).isoformat()
        return result16.BootNotification(current_time=stamp, interval=3600, status="Accepted")

    @on("StatusNotification")
    def status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=datetime.now(UTC).isoformat())

    @on("MeterValues")
    def meter(self, **_: Any) -> Any:
        return self.count()

    def count(self) -> Any:
        Cloud16.received += 1
        if Cloud16.received >= Cloud16.target and Cloud16.done is not None:
            Cloud16.done.set()
        return result16.MeterValues()


class Cloud16Unvalidated(Cloud16):
    """The same cloud without the library's schema validation of MeterValues: with it,
    one core of `ocpp`-library CSMS handles about 2,000 MeterValues/s (the local-CSMS
    baseline shows the same), so it, not the uplink, would set the figure."""

    @on("MeterValues", skip_schema_validation=True)
    def meter(self, **_: Any) -> Any:
        return self.count()


async def serve_cloud(port: int, expect: int, validate: bool) -> None:
    """The cloud CSMS in a process of its own (it is not on the gateway): exits after
    `expect` MeterValues."""
    from websockets.asyncio.server import serve
    from websockets.typing import Subprotocol

    Cloud16.received, Cloud16.target, Cloud16.done = 0, expect, asyncio.Event()
    kind = Cloud16 if validate else Cloud16Unvalidated

    async def handle(ws: Any) -> None:
        cp = kind(ws.request.path.rsplit("/", 1)[-1], ws)
        with contextlib.suppress(Exception):
            await cp.start()

    async with serve(handle, "127.0.0.1", port, subprotocols=[Subprotocol("ocpp1.6")]):
        print("ready", flush=True)
        await Cloud16.done.wait()


async def ocpp_replay(args: argparse.Namespace, tmp: Path, validate: bool) -> dict[str, Any]:
    """The backlog of `--stations` stations replayed to the `ocpp`-library cloud."""
    from edge.service.daemon import _uplink_store
    from edge.uplink.ocpp_up import OcppUplink, StationLink

    path = tmp / f"ocpp{int(validate)}.sqlite"
    make_ocpp_backlog(path, args.ocpp_records, args.stations)
    store = await Store.open(path, outbox_max_rows=args.ocpp_records * 2)
    identity = {"vendor": "bench", "model": "x", "firmware": "", "serial": ""}
    links = [
        StationLink(f"CP{i:03d}", "1.6", lambda: identity, lambda: {1: "Charging"})
        for i in range(args.stations)
    ]

    async def forward(*_: Any) -> dict[str, Any]:
        return {}

    port = free_port()
    cloud = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-cloud",
        str(port),
        "--ocpp-records",
        str(args.ocpp_records),
        *(["--cloud-validates"] if validate else []),
        stdout=asyncio.subprocess.PIPE,
    )
    assert cloud.stdout is not None
    await cloud.stdout.readline()  # "ready"
    url = f"ws://127.0.0.1:{port}/ocpp"
    uplink = OcppUplink(url, None, _uplink_store(store), forward, lambda: links)
    t0 = time.perf_counter()
    uplink.start()
    await cloud.wait()  # every MeterValues arrived
    seconds = time.perf_counter() - t0
    await uplink.stop()
    await store.close()
    rate = args.ocpp_records / seconds
    cloud_kind = "validating" if validate else "not validating"
    print(
        f"ocpp uplink, cloud {cloud_kind}: {args.ocpp_records} MeterValues in {seconds:.2f} s"
        f" = {rate:.0f}/s"
    )
    return {"records": args.ocpp_records, "seconds": round(seconds, 2), "msgs_per_s": round(rate)}


def overhead(port: int, stations: int, duration: float, rounds: int) -> dict[str, Any]:
    """1.6 MeterValues throughput of `edge run` (the local-CSMS bench's load generator)
    without an uplink and with the MQTT uplink draining to mosquitto as it goes.

    Runs alternate (without, with, with, without, ...) and each side's median is taken:
    single runs on a shared 2-core machine differ by up to half from one to the next
    (4,082 to 6,430 msg/s seen for the same code in one series), hence five rounds by
    default. After each run with the uplink, its backlog shows whether it kept up."""
    from bench.ocpp_throughput import loadgen, start_edge

    ns = argparse.Namespace(stations=stations, duration=duration)
    uplink = f'[uplink]\nmode = "mqtt"\n[uplink.mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
    runs: dict[str, list[float]] = {"without": [], "with": []}
    backlogs: list[int] = []
    for i in range(rounds):
        order = ("without", "with") if i % 2 == 0 else ("with", "without")
        for label in order:
            with tempfile.TemporaryDirectory() as tmp:
                proc, url, api, _ = start_edge(Path(tmp), extra=uplink if label == "with" else "")
                try:
                    runs[label].append(loadgen(url, "mv16", ns)["msgs_per_s"])
                    if label == "with":
                        with urllib.request.urlopen(f"{api}/api/v1/uplink", timeout=5) as resp:
                            backlogs.append(json.loads(resp.read())["backlog"])
                finally:
                    proc.terminate()
                    proc.wait(30)
            print(f"local CSMS {label} the uplink: {runs[label][-1]:.0f} msg/s", flush=True)
    out: dict[str, Any] = {
        "stations": stations,
        "duration_s": duration,
        "rounds": rounds,
        "runs": runs,
        "without": statistics.median(runs["without"]),
        "with": statistics.median(runs["with"]),
        "backlog_after_run": backlogs,
    }
    out["overhead_percent"] = round(100 * (1 - out["with"] / out["without"]), 1)
    return out


def report(r: dict[str, Any]) -> None:
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "uplink_replay.json").write_text(json.dumps(r, indent=2) + "\n")
    b, e, o, oc = r["baseline"], r["edge"], r["overhead"], r["ocpp"]
    ov = r["ocpp_validating_cloud"]
    ok = e["records_per_s"] >= TARGET
    o_ok = o["overhead_percent"] <= 20
    body = "\n".join(
        [
            f"Run {r['time']} on {r['machine']['cpus']} x {r['machine']['cpu'].split()[0]}, "
            f"Python {r['machine']['python']}; a backlog of {r['records']} meter.values "
            f"records from {r['stations']} stations replayed to mosquitto on loopback (QoS 1, "
            "a row deleted only after its PUBACK); publisher, subscriber and broker share "
            "the machine.",
            "",
            "| figure | baseline (publish, await PUBACK, delete, commit, per record) | edge |",
            "|---|---|---|",
            f"| replay | {b['records_per_s']} records/s ({b['seconds']} s) "
            f"| {e['records_per_s']} records/s ({e['seconds']} s) |",
            "",
            "| target | measured | goal | met |",
            "|---|---|---|---|",
            f"| MQTT replay of {r['records']} records | {e['records_per_s']} records/s "
            f"| >= {TARGET:g}/s | {'yes' if ok else 'NO'} |",
            f"| OCPP uplink replay, {r['stations']} stations | {oc['msgs_per_s']} msg/s "
            f"| >= 2000 msg/s | {'yes' if oc['msgs_per_s'] >= 2000 else 'NO'} |",
            f"| uplink overhead on the local-CSMS bench | {o['overhead_percent']} % "
            f"| <= 20 % | {'yes' if o_ok else 'NO'} |",
            "",
            f"Overhead: 1.6 MeterValues, saturated, {o['stations']} stations, "
            f"{o['duration_s']:g} s per run (`bench/loadgen.py`), {o['rounds']} alternating "
            f"runs each, medians: {o['without']:.0f} msg/s without an uplink "
            f"(runs: {', '.join(f'{x:.0f}' for x in o['runs']['without'])}), "
            f"{o['with']:.0f} msg/s with the MQTT uplink publishing every record to mosquitto "
            f"as it is committed (runs: {', '.join(f'{x:.0f}' for x in o['runs']['with'])}); "
            "records still waiting in the outbox when each run with the uplink ended: "
            f"{', '.join(str(b) for b in o['backlog_after_run'])}.",
            "",
            f"OCPP replay: {oc['records']} 1.6 MeterValues queued for {r['stations']} stations, "
            "each station on its own upstream websocket (one CALL in flight each) to a cloud "
            f"CSMS written with the `ocpp` library in a process of its own: {oc['seconds']} s "
            f"({oc['msgs_per_s']} msg/s) with the cloud's schema validation of MeterValues "
            f"off, {ov['seconds']} s ({ov['msgs_per_s']} msg/s) with the library's default "
            "validation on. With validation the cloud process runs at about one full core "
            "(the same library handles about 2,100 MeterValues/s in the local-CSMS baseline), "
            "so that run measures the cloud as much as the uplink; the target row uses the "
            "other run, where the uplink sets the pace.",
        ]
    )
    print(body)
    update_results_md("uplink_replay", "`bench/uplink_replay.py`: outbox replay", body)


async def run(args: argparse.Namespace) -> None:
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp))
        try:
            result = {
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "records": args.records,
                "stations": args.stations,
                "edge": await phase("edge", args, broker, Path(tmp)),
                "baseline": await phase("baseline", args, broker, Path(tmp)),
                "ocpp": await ocpp_replay(args, Path(tmp), validate=False),
                "ocpp_validating_cloud": await ocpp_replay(args, Path(tmp), validate=True),
                "overhead": await asyncio.to_thread(
                    overhead,
                    broker.port,
                    args.overhead_stations,
                    args.overhead_seconds,
                    args.overhead_rounds,
                ),
            }
        finally:
            broker.stop()
    report(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--ocpp-records", type=int, default=20_000)
    parser.add_argument("--overhead-stations", type=int, default=200)
    parser.add_argument("--overhead-seconds", type=float, default=6.0)
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--serve-cloud", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cloud-validates", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cloud:
        asyncio.run(serve_cloud(args.serve_cloud, args.ocpp_records, args.cloud_validates))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
