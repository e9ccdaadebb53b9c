"""The MQTT uplink against a real mosquitto started by the test: records made while the
broker is down arrive afterwards, in order, with stable ids and per-station seq; a
broker restart mid-stream loses nothing; commands from the cloud reach chargers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from edge.sim.charger import SimCharger, SimStation
from tests.broker import Broker, Subscriber, needs_mosquitto, publish
from tests.conftest import RunningSite, StartSite
from tests.peer import BOOT_16, RawCharger
from tests.test_meters_daemon import edge_cli
from tests.wait import until

pytestmark = needs_mosquitto


def uplink_toml(port: int) -> str:
    # With an uplink the site is no longer open: the test cards are accepted explicitly.
    return (
        f'\n[auth]\nunknown_tags = "accept"\n\n[uplink]\nmode = "mqtt"\n\n'
        f'[uplink.mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
    )


def backlog(site: RunningSite) -> int:
    with sqlite3.connect(site.db) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def post(site: RunningSite, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.post(site.api + path) as resp:
        return await resp.json()


def assert_gapless(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per station: seq counts up by one, in the order received (duplicates allowed)."""
    seqs: dict[str, list[int]] = {}
    seen: set[str] = set()
    for e in events:
        if e["id"] in seen:
            continue  # a duplicate after a reconnect: same id
        seen.add(e["id"])
        seqs.setdefault(e["station"] or "", []).append(e["seq"])
    for station, found in seqs.items():
        assert found == list(range(found[0], found[0] + len(found))), (station, found)
        assert found[0] == 1, (station, found)
    return seqs


async def test_what_happens_while_the_broker_is_down_arrives_later_in_order(
    start_site: StartSite, tmp_path: Path
) -> None:
    broker = Broker(tmp_path)  # not started: the cloud is away
    site = await start_site(uplink_toml(broker.port))
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        await charger.start(1, "CARD1")
        await charger.send_meter(1)
        await charger.stop(1, "EVDisconnected")
        waiting = backlog(site)
        assert waiting >= 5
        code, out = await edge_cli("uplink", "--api", site.api)
        assert code == 0 and "connected  no" in out and f"backlog    {waiting}" in out, out
        assert "last error -" not in out  # the refused connection is named

        broker.start()
        async with Subscriber(broker.port, "edge/test-site/#") as cloud:
            assert (await post(site, "/api/v1/uplink/retry")) == {"retrying": True}
            await until(lambda: backlog(site) == 0)
            await until(lambda: len(cloud.events()) >= waiting)
            events = cloud.events()
            kinds = [e["type"] for e in events if e["station"] == "CP16"]
            assert kinds[:2] == ["station.connected", "station.boot"]
            assert "transaction.started" in kinds and kinds.index("transaction.started") < (
                kinds.index("transaction.completed")
            )
            assert "meter.values" in kinds
            assert all(e["site"] == "test-site" and e["id"] and e["time"] for e in events)
            assert_gapless(events)
            topics = {t for t, _, _ in cloud.messages}
            assert "edge/test-site/events/transaction.completed" in topics

            # the broker goes away mid-stream and comes back: nothing is lost
            broker.stop()
            await until(lambda: site.daemon.uplink is not None and not site.daemon.uplink.connected)
            for _ in range(5):
                await charger.start(1, "CARD2")
                await charger.send_meter(1)
                await charger.stop(1)
            broker.start()
        async with Subscriber(broker.port, "edge/test-site/#") as cloud2:
            await post(site, "/api/v1/uplink/retry")
            await until(lambda: backlog(site) == 0)
            later = cloud2.events()
            assert later, "the records made while the broker was down"
            assert all(
                e["seq"] > max(s["seq"] for s in events if s["station"] == "CP16")
                for e in later
                if e["station"] == "CP16"
            )
            combined = assert_gapless(events + later)
            assert len(combined["CP16"]) >= len(kinds) + 15
        # retained for whoever subscribes later: the gateway's status, each station's state
        async with Subscriber(broker.port, "edge/test-site/+/#") as late:
            await until(lambda: len([m for m in late.messages if m[2]]) >= 2)
            retained = {t: p for t, p, r in late.messages if r}
        assert retained["edge/test-site/status"] == "online"
        state = retained["edge/test-site/stations/CP16/state"]
        assert state["connected"] is True and state["connectors"][0]["id"] == 1
        code, out = await edge_cli("uplink", "--json", "--api", site.api)
        assert code == 0 and '"connected": true' in out and '"backlog": 0' in out, out
    finally:
        await charger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        broker.stop()


async def test_commands_from_the_cloud_reach_the_charger_and_are_answered(
    start_site: StartSite, tmp_path: Path
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    site = await start_site(uplink_toml(broker.port))
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        await until(lambda: site.daemon.uplink is not None and site.daemon.uplink.connected)
        results = "edge/test-site/commands/results/#"
        async with Subscriber(broker.port, results) as cloud:
            base = "edge/test-site/commands"
            await publish(
                broker.port, f"{base}/CP16/trigger", {"request_id": "r1", "message": "Heartbeat"}
            )
            await publish(broker.port, f"{base}/NOPE/reset", {"request_id": "r2"})
            await publish(broker.port, f"{base}/CP16/limit", {"request_id": "r3", "amps": "lots"})
            await until(lambda: len(cloud.messages) >= 3)
            answers = {p["request_id"]: p for _, p, _ in cloud.messages}
        assert answers["r1"]["ok"] is True and answers["r1"]["result"]["accepted"] is True
        assert ("TriggerMessage", {"requestedMessage": "Heartbeat"}) in charger.received
        assert answers["r2"]["ok"] is False and answers["r2"]["error"]["type"] == "UnknownStation"
        assert answers["r3"]["ok"] is False and "amps" in answers["r3"]["error"]["message"]
    finally:
        await charger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        broker.stop()


async def test_kill_9_under_load_then_everything_acknowledged_reaches_the_broker(
    tmp_path: Path,
) -> None:
    from tests.daemon_process import DaemonProcess, write_config
    from tests.test_durability import MeterLoad

    broker = Broker(tmp_path)
    broker.start()
    db = tmp_path / "edge.sqlite"
    names = [f"CP{i}" for i in range(3, 9)]
    extra = "".join(f'\n[[stations]]\nid = "{s}"\n' for s in names)
    extra += uplink_toml(broker.port)
    ocpp, api = write_config(tmp_path / "edge.toml", db, extra)
    stations = ["CP1", "CP2", *names]
    load = MeterLoad(stations)
    acked = load.acked

    async with Subscriber(broker.port, "edge/proc-site/events/#") as cloud:
        proc = DaemonProcess(tmp_path / "edge.toml", api)
        try:
            await asyncio.to_thread(proc.wait_ready)
            await load.kill_9_under_load(f"ws://127.0.0.1:{ocpp}/ocpp", proc)
            assert sum(len(v) for v in acked.values()) > 50, "too little load to prove anything"
            # back on the same file: the pump resumes from the outbox
            proc = DaemonProcess(tmp_path / "edge.toml", api)
            await asyncio.to_thread(proc.wait_ready)
            await until(lambda: outbox_rows(db) == 0, timeout=30)
            await asyncio.sleep(0.3)
        finally:
            proc.stop()
            broker.stop()
        got: dict[str, set[float]] = {s: set() for s in stations}
        for e in cloud.events():
            if e["type"] == "meter.values":
                for mv in e["data"]["raw"]["meterValue"]:
                    got[e["station"]].update(float(sv["value"]) for sv in mv["sampledValue"])
        for station in stations:
            missing = set(acked[station]) - got[station]
            assert not missing, (
                f"{station}: acknowledged but never published: {sorted(missing)[:5]}"
            )
        assert_gapless(cloud.events())


def outbox_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def test_home_assistant_discovery_describes_each_station(
    start_site: StartSite, tmp_path: Path
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    site = await start_site(uplink_toml(broker.port) + "homeassistant = true\n")
    try:
        await until(lambda: site.daemon.uplink is not None and site.daemon.uplink.connected)
        async with Subscriber(broker.port, "homeassistant/#") as ha:
            await until(lambda: len(ha.messages) >= 12)  # 3 stations x 4 sensors, retained
            configs = {p["unique_id"]: p for _, p, retained in ha.messages if retained}
        status = configs["edge_test-site_station_CP16_status"]
        assert status["state_topic"] == "edge/test-site/stations/CP16/state"
        assert status["availability_topic"] == "edge/test-site/status"
        assert status["device"]["name"] == "CP16"
        current = configs["edge_test-site_station_CP16_current"]
        assert current["unit_of_measurement"] == "A" and current["device_class"] == "current"
    finally:
        broker.stop()


def test_discovery_covers_meters_with_energy_and_current_per_phase() -> None:
    import orjson

    from edge.uplink.topics import discovery

    found = {t: orjson.loads(p) for t, p in discovery("edge", "s1", "ha", [], ["grid"])}
    energy = found["ha/sensor/edge_s1_meter_grid_import/config"]
    assert energy["state_class"] == "total_increasing" and energy["unit_of_measurement"] == "Wh"
    assert energy["state_topic"] == "edge/s1/meters/grid/state"
    l3 = found["ha/sensor/edge_s1_meter_grid_current_l3/config"]
    assert l3["value_template"] == "{{ value_json.current_a[2] }}"


async def test_records_of_every_size_arrive_whole(start_site: StartSite, tmp_path: Path) -> None:
    # Outbox records are encoded by edge itself (MQTT 3.1.1 §3.3); the remaining length
    # takes one to three bytes (§2.2.3) by size, and a batch goes out as one write.
    broker = Broker(tmp_path)
    broker.start()
    try:
        site = await start_site(uplink_toml(broker.port))
        async with Subscriber(broker.port, "edge/test-site/events/#") as cloud:
            charger = await RawCharger.connect(site.url, "CP16")
            await charger.call("BootNotification", BOOT_16)
            sizes = [0, 1, 60, 100, 16_300, 16_400, 40_000]
            for size in sizes:
                reply = await charger.call("DataTransfer", {"vendorId": "v", "data": "d" * size})
                assert reply[0] == 3
            await until(lambda: backlog(site) == 0)
            await until(lambda: len(cloud.events()) >= 2 + len(sizes))
            transfers = [e for e in cloud.events() if e["type"] == "data.transfer"]
            assert [e["data"]["raw"]["data"] for e in transfers] == ["d" * n for n in sizes]
            assert_gapless(cloud.events())
            await charger.close()
    finally:
        broker.stop()
