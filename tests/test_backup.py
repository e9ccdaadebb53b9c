"""`edge backup`: a consistent, checked copy of the database, while chargers are writing
to it and after the daemon has stopped, without leaving files beside the original."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

from tests.conftest import StartSite, site_config
from tests.peer import BOOT_16, RawCharger
from tests.test_meters_daemon import edge_cli


def sessions_in(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT station, status FROM sessions ORDER BY id").fetchall()
    conn.close()
    return rows


async def test_a_backup_is_consistent_while_chargers_write_and_after_a_stop(
    start_site: StartSite, tmp_path: Path
) -> None:
    site = await start_site()
    config = site.config_path
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    start = {
        "connectorId": 1,
        "idTag": "CARD",
        "meterStart": 0,
        "timestamp": "2026-12-04T10:00:00Z",
    }
    tx = (await charger.call("StartTransaction", start))[2]["transactionId"]

    async def meter_values() -> None:
        for wh in range(10**6):
            sampled = [{"value": str(wh), "measurand": "Energy.Active.Import.Register"}]
            value = {"timestamp": "2026-12-04T10:01:00Z", "sampledValue": sampled}
            payload = {"connectorId": 1, "transactionId": tx, "meterValue": [value]}
            await charger.call("MeterValues", payload)

    writing = asyncio.create_task(meter_values())
    try:
        await asyncio.sleep(0.2)
        code, out = await edge_cli("backup", str(tmp_path / "live.sqlite"), "--config", str(config))
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
    assert code == 0, out
    assert "1 sessions (1 active)" in out and "checked" in out, out
    assert sessions_in(tmp_path / "live.sqlite") == [("CP16", "active")]
    await charger.close()

    # Stopped: the copy is taken without creating a WAL or its index beside the file,
    # which, made by root, the daemon's user could not open.
    await site.daemon.stop()
    before = sorted(os.listdir(tmp_path))
    assert "edge.sqlite-wal" not in before
    code, out = await edge_cli("backup", str(tmp_path / "cold.sqlite"), "--config", str(config))
    assert code == 0, out
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "cold.sqlite"])
    assert sessions_in(tmp_path / "cold.sqlite") == [("CP16", "active")]

    # Never over an existing file; a missing database is named.
    code, out = await edge_cli("backup", str(tmp_path / "cold.sqlite"), "--config", str(config))
    assert code == 1 and "cold.sqlite exists" in out, out
    config.write_text(site_config(tmp_path).replace("edge.sqlite", "missing.sqlite"))
    code, out = await edge_cli("backup", str(tmp_path / "x.sqlite"), "--config", str(config))
    assert code == 1 and "no database at" in out and "missing.sqlite" in out, out
