"""kill -9 of `edge run` under load, and a full disk: every message a charger got an
answer for survives, and one that could not be stored is refused, not acknowledged."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from structlog.testing import capture_logs

from tests.conftest import RunningSite
from tests.daemon_process import DaemonProcess, write_config
from tests.peer import BOOT_16, RawCharger
from tests.wait import until

STATIONS = [f"CP{i}" for i in range(3, 21)]  # plus CP1, CP2 from the base config


def meter_values(value: float, tx: int) -> dict[str, object]:
    return {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [
            {
                "timestamp": "2026-11-22T10:00:00Z",
                "sampledValue": [
                    {"value": str(value), "measurand": "Energy.Active.Import.Register"}
                ],
            }
        ],
    }


class MeterLoad:
    """Stations that boot, start a session and send MeterValues as fast as they are
    answered; `acked` holds every value a station got a CALLRESULT for."""

    def __init__(self, stations: list[str]) -> None:
        self.stations = stations
        self.acked: dict[str, list[float]] = {s: [] for s in stations}
        self.tx_ids: dict[str, int] = {}
        self.started = asyncio.Event()  # every station's session runs

    async def charge(self, url: str, station: str) -> None:
        charger = await RawCharger.connect(url, station)
        await charger.call("BootNotification", BOOT_16)
        reply = await charger.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-11-22T10:00:00Z"},
        )
        self.tx_ids[station] = reply[2]["transactionId"]
        if len(self.tx_ids) == len(self.stations):
            self.started.set()
        value = 0.0
        while True:
            value += 1
            answer = await charger.call("MeterValues", meter_values(value, self.tx_ids[station]))
            if answer[0] == 3:
                self.acked[station].append(value)

    async def kill_9_under_load(self, url: str, proc: DaemonProcess) -> None:
        """Every station charging against `proc`, then `kill -9` of it mid-stream."""
        tasks = [asyncio.create_task(self.charge(url, s)) for s in self.stations]
        await asyncio.wait_for(self.started.wait(), 15)
        await asyncio.sleep(0.8)
        proc.kill9()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite"
    extra = "".join(f'\n[[stations]]\nid = "{s}"\n' for s in STATIONS)
    ocpp, api = write_config(tmp_path / "edge.toml", db, extra)
    proc = DaemonProcess(tmp_path / "edge.toml", api)
    await asyncio.to_thread(proc.wait_ready)
    url = f"ws://127.0.0.1:{ocpp}/ocpp"
    stations = ["CP1", "CP2", *STATIONS]
    load = MeterLoad(stations)
    acked, tx_ids = load.acked, load.tx_ids
    await load.kill_9_under_load(url, proc)

    total = sum(len(v) for v in acked.values())
    assert total > 100, f"too little load to prove anything ({total} acknowledged)"
    with sqlite3.connect(db) as conn:
        for station in stations:
            stored = set()
            for (data,) in conn.execute(
                "SELECT data FROM meter_values WHERE station = ?", (station,)
            ):
                for reading in json.loads(data):
                    stored.update(s["value"] for s in reading["samples"])
            missing = set(acked[station]) - stored
            assert not missing, f"{station}: acknowledged but lost: {sorted(missing)[:5]}"
            queued = conn.execute(
                "SELECT count(*) FROM outbox WHERE station = ? AND type = 'meter.values'",
                (station,),
            ).fetchone()[0]
            assert queued >= len(acked[station]), f"{station}: outbox misses records"

    # The daemon comes back on the same file with every session still active.
    proc = DaemonProcess(tmp_path / "edge.toml", api)
    try:
        await asyncio.to_thread(proc.wait_ready)
        charger = await RawCharger.connect(url, "CP1")
        await charger.call("BootNotification", BOOT_16)
        reply = await charger.call(
            "StartTransaction",
            {"connectorId": 2, "idTag": "T", "meterStart": 0, "timestamp": "2026-11-22T11:00:00Z"},
        )
        assert reply[2]["transactionId"] > max(tx_ids.values()), "transaction ids are never reused"
        await charger.close()
    finally:
        assert proc.stop() == 0
    with sqlite3.connect(db) as conn:
        active = conn.execute("SELECT count(*) FROM sessions WHERE status = 'active'").fetchone()
        connected = conn.execute("SELECT count(*) FROM stations WHERE connected = 1").fetchone()
    assert active[0] == len(stations) + 1
    assert connected[0] == 0, "a clean stop leaves no station marked connected"


async def test_a_full_disk_refuses_what_it_cannot_store_and_loses_nothing(
    site: RunningSite,
) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    store = site.daemon.store
    assert store is not None
    # SQLite's own limit on the file's size: past it, writes fail with SQLITE_FULL, as
    # on a full disk.
    pages = await store.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await store.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    big = {"vendorId": "acme", "data": "x" * 30_000}  # needs pages the file cannot get
    refused = await charger.call("DataTransfer", big)
    assert refused[0] == 4 and refused[2] == "InternalError", "not stored: not acknowledged"
    assert (await charger.call("Heartbeat", {}))[0] == 3, "the station is still served"

    await store.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    accepted = await charger.call("DataTransfer", big)
    assert accepted[0] == 3
    with sqlite3.connect(site.db) as conn:
        rows = conn.execute(
            "SELECT seq, type FROM outbox WHERE station = 'CP16' ORDER BY id"
        ).fetchall()
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "no seq was lost to the refused write"
    assert [t for _, t in rows].count("data.transfer") == 1
    await charger.close()


async def test_a_station_that_goes_while_nothing_can_be_stored_is_shown_gone(
    site: RunningSite,
) -> None:
    # When the store takes no more writes (a full disk with nothing left to drop, a
    # failing SD card), the disconnect cannot be journaled; the live state, which load
    # balancing and `edge stations` read, must still say the station is gone.
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    assert site.daemon.registry.stations["CP16"].connected
    assert site.daemon.store is not None
    await site.daemon.store.close()
    with capture_logs() as logs:
        await charger.close()
        await until(lambda: not site.daemon.registry.stations["CP16"].connected)
    [unrecorded] = [e for e in logs if e["event"] == "ocpp.disconnect.unrecorded"]
    assert "closed" in unrecorded["error"], unrecorded
