"""A damaged database file (a worn SD card) is set aside and a new one started, so that
the chargers keep their central system; nothing is deleted, and the site manager is
told where the old file went."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from edge.service.daemon import EXIT_RESTART
from edge.store import damage, queries
from edge.store.writer import Store
from tests.conftest import StartSite
from tests.daemon_process import DaemonProcess, write_config
from tests.peer import BOOT_16, RawCharger
from tests.test_meters_daemon import api, edge_cli
from tests.test_store import start16, values16


def damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table`'s b-tree with other bytes, as a bad card would."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    conn.close()
    with db.open("r+b") as f:
        f.seek((root[0] - 1) * page_size)
        f.write(bytes((i * 37 + 11) % 251 for i in range(page_size)))


def contents(path: Path) -> bytes:
    return path.read_bytes()


async def test_a_file_that_is_not_a_database_is_set_aside_and_the_site_runs_on(
    start_site: StartSite, tmp_path: Path
) -> None:
    db = tmp_path / "edge.sqlite"
    garbage = bytes(range(256)) * 64
    db.write_bytes(garbage)
    with capture_logs() as logs:
        site = await start_site()
    [logged] = [e for e in logs if e["event"] == "store.damaged"]
    kept = Path(logged["kept"])
    assert kept.name.startswith("edge.sqlite.damaged-") and contents(kept) == garbage
    assert ".recover" in logged["hint"]

    # A new database serves the chargers.
    charger = await RawCharger.connect(site.url, "CP16")
    assert (await charger.call("BootNotification", BOOT_16))[2]["status"] == "Accepted"
    await charger.close()

    _, status = await api(site, "/api/v1/status")
    aside = status["store"]["set_aside"]
    assert aside["path"] == str(kept) and "not a database" in aside["error"]
    code, out = await edge_cli("status", "--api", site.api)
    assert code == 0 and "was set aside" in out and str(kept) in out, out
    config = site.config_path
    code, out = await edge_cli("doctor", "--config", str(config), "--api", site.api)
    assert code != 0 and f"sqlite3 {kept} .recover" in out, out
    # Once the old file is dealt with, doctor is content.
    os.unlink(kept)
    code, out = await edge_cli("doctor", "--config", str(config), "--api", site.api)
    assert "was set aside" not in out, out
    code, out = await edge_cli("status", "--api", site.api)
    assert "was set aside" not in out, out


async def test_damage_found_while_running_is_checked_and_set_aside_at_the_next_start(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.sqlite"
    store = await Store.open(db)
    sid = (await store.record(start16())).session_id or 0
    await store.record(values16(sid, 100.0))
    await store.close()
    # The damage is where a start does not look (the meter values' b-tree) ...
    damage_table(db, "meter_values")
    store = await Store.open(db)
    assert store.disk.set_aside is None, "nothing found at start"
    try:
        # ... until a write needs it: refused, the store is failing, the file is marked.
        with capture_logs() as logs:
            try:
                await store.record(values16(sid, 200.0))
            except sqlite3.DatabaseError as exc:
                assert damage.is_damage(exc), exc
            else:
                raise AssertionError("a write into a damaged table succeeded")
        assert any(e["event"] == "store.damaged" for e in logs), logs
        assert store.disk.failing is not None and "malformed" in store.disk.failing["error"]
        assert damage.flagged(db)
        # Writes that do not touch the damage still commit, and the store says so.
        await store.write(lambda c: c.execute("INSERT INTO meta VALUES ('x', '1')"))
        assert store.disk.failing is None
    finally:
        await store.close()

    # The next start checks the whole file, keeps it aside with its WAL, and starts anew.
    with capture_logs() as logs:
        store = await Store.open(db)
    try:
        [logged] = [e for e in logs if e["event"] == "store.damaged"]
        kept = Path(logged["kept"])
        assert kept.name in os.listdir(tmp_path) and not damage.flagged(db)
        assert store.disk.set_aside is not None and store.disk.set_aside["path"] == str(kept)
        assert await store.read(lambda c: queries.list_sessions(c, active=None, limit=5)) == []
        # The old file still holds its sessions for whoever recovers it.
        with sqlite3.connect(kept) as old:
            assert old.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
        old.close()
    finally:
        await store.close()


async def test_a_marked_file_that_checks_sound_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite"
    store = await Store.open(db)
    await store.record(start16())
    await store.close()
    damage.flag(db, "disk I/O error", datetime.now(UTC))
    with capture_logs() as logs:
        store = await Store.open(db)
    try:
        assert [e["result"] for e in logs if e["event"] == "store.checked"] == ["ok"]
        assert not damage.flagged(db) and store.disk.set_aside is None
        assert len(await store.read(lambda c: queries.list_sessions(c, active=None, limit=5)))
    finally:
        await store.close()
    assert not [p for p in os.listdir(tmp_path) if ".damaged-" in p]


async def test_edge_run_restarts_when_a_write_finds_damage_and_the_next_start_sets_it_aside(
    tmp_path: Path,
) -> None:
    # At an unattended site: a write finds the file damaged; edge exits for systemd to
    # start it again (Restart=on-failure), and that start checks the file and starts anew.
    db = tmp_path / "edge.sqlite"
    store = await Store.open(db)
    await store.record(start16())
    await store.close()
    damage_table(db, "meter_values")
    ocpp_port, api_port = write_config(tmp_path / "edge.toml", db)
    proc = DaemonProcess(tmp_path / "edge.toml", api_port)
    try:
        await asyncio.to_thread(proc.wait_ready)
        url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
        charger = await RawCharger.connect(url, "CP1")
        await charger.call("BootNotification", BOOT_16)
        at = "2026-12-04T10:00:00Z"
        start = {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": at}
        tx = (await charger.call("StartTransaction", start))[2]["transactionId"]
        sampled = [{"value": "10", "measurand": "Energy.Active.Import.Register"}]
        values = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": at, "sampledValue": sampled}],
        }
        refused = await charger.call("MeterValues", values)
        assert refused[0] == 4, "not stored: not acknowledged"
        code = await asyncio.to_thread(proc.proc.wait, 20)
        assert code == EXIT_RESTART, code
    finally:
        proc.stop()
    out = proc.proc.stdout.read().decode() if proc.proc.stdout else ""
    assert "daemon.restarting" in out, out

    again = DaemonProcess(tmp_path / "edge.toml", api_port)
    try:
        await asyncio.to_thread(again.wait_ready)
        kept = [p for p in os.listdir(tmp_path) if p.startswith("edge.sqlite.damaged-")]
        assert len(kept) == 1 and not damage.flagged(db), os.listdir(tmp_path)
        status = await asyncio.to_thread(
            lambda: json.loads(urllib.request.urlopen(f"{again.api}/api/v1/status").read())
        )
        assert status["store"]["set_aside"]["path"].endswith(kept[0])
    finally:
        assert again.stop() == 0
