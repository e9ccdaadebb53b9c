"""A full disk (DESIGN.md §2): the oldest intermediate meter values are dropped to make
room, never a session's start or stop, and the site manager is told.

One test fills a real filesystem (a small tmpfs, mounted by the test; that needs root,
as `make test` has in CI), where SQLite cannot even delete until the store gives back
its reserve. The other fills the database to SQLite's own limit on its size, which fails
writes the same way (SQLITE_FULL) and runs anywhere."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from edge.store import queries
from edge.store.writer import Store
from tests.conftest import StartSite, site_config
from tests.peer import BOOT_16, RawCharger
from tests.test_meters_daemon import api, edge_cli
from tests.test_store import start16, stop16, values16
from tests.wait import until


def rows(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_a_full_database_drops_the_oldest_meter_values_and_keeps_every_session(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.sqlite"
    store = await Store.open(db)
    try:
        sid = (await store.record(start16())).session_id or 0
        history = 4000  # enough of the journal's own copies to make room from (> 1 MiB)
        for first in range(0, history, 500):
            await asyncio.gather(
                *(store.record(values16(sid, float(wh))) for wh in range(first, first + 500))
            )
        # SQLite's limit on the file: no page more than it has now.
        pages = await store.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await store.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))

        # Every write goes on: room is made from the journal's own copies of the meter
        # values, oldest first; the cloud's copies (the outbox) are all still there.
        sent = history
        with capture_logs() as logs:
            while not store.disk.dropped:
                await store.record(values16(sid, float(sent)))
                sent += 1
                assert sent < history + 1000, "the file never filled"
        [full] = [e for e in logs if e["event"] == "store.full"]
        assert set(full["dropped"]) == {"meter_values"}, full
        assert store.disk.full and store.disk.full_at is not None
        assert rows(db, "SELECT count(*) FROM outbox WHERE type = 'meter.values'") == sent
        local = rows(db, "SELECT min(id) FROM meter_values")
        assert local > store.disk.dropped["meter_values"], "the oldest went first"

        # With the journal's copies gone, undelivered intermediate values go, oldest first,
        # each session's newest kept; its start and its stop stay.
        with capture_logs() as logs:
            while not any(e["event"] == "outbox.thinned" for e in logs):
                await store.record(values16(sid, float(sent)))
                sent += 1
                assert sent < 3 * history, "the outbox was never thinned"
        done = await store.record(stop16(sid))
        assert done.session_id == sid
        session = await store.read(lambda c: queries.get_session(c, sid))
        assert session is not None and session.status == "completed"
        with sqlite3.connect(db) as conn:
            kept = [t for (t,) in conn.execute("SELECT type FROM outbox ORDER BY id")]
        assert kept[0] == "transaction.started" and kept[-1] == "transaction.completed"
        assert 0 < kept.count("meter.values") < sent
        assert rows(db, "SELECT count(*) FROM meter_values") < 500
    finally:
        await store.close()
    # What was dropped is counted in the file, for `edge status` after a restart.
    again = await Store.open(db)
    try:
        assert again.disk.dropped["meter_values"] >= history
        assert not again.disk.full, "a new start has not seen the disk full"
    finally:
        await again.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB filesystem of its own (tmpfs), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (make test in CI runs as root)")
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until its filesystem has no byte left."""
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        while chunk:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]


def meter_values(transaction_id: int, wh: int) -> dict[str, object]:
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    sampled = [
        {"value": f"{wh + k}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        for k in range(12)
    ]
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": at, "sampledValue": sampled}],
    }


async def test_on_a_full_disk_the_chargers_are_still_answered_and_every_session_kept(
    start_site: StartSite, tmp_path: Path, small_disk: Path
) -> None:
    db = small_disk / "edge.sqlite"
    text = site_config(tmp_path).replace(
        f'path = "{tmp_path / "edge.sqlite"}"\nreserve_mb = 1', f'path = "{db}"\nreserve_mb = 4'
    )
    assert str(db) in text
    site = await start_site(text=text)
    config = site.config_path
    assert (small_disk / "edge.sqlite.reserve").stat().st_size == 4 << 20

    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    started = await charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": "2026-12-04T12:00:00Z"},
    )
    tx = started[2]["transactionId"]
    for wh in range(0, 3000, 10):  # some history to drop
        assert (await charger.call("MeterValues", meter_values(tx, wh)))[0] == 3

    fill(small_disk / "filler")
    assert os.statvfs(small_disk).f_bavail == 0
    # Every message is still answered, after it is committed: the store gives back its
    # reserve and drops the oldest meter values.
    with capture_logs() as logs:
        wh = 3000
        while not site.daemon.store or not site.daemon.store.disk.full:
            reply = await charger.call("MeterValues", meter_values(tx, wh))
            assert reply[0] == 3, reply
            wh += 10
            assert wh < 200_000, "the disk never filled"
        for _ in range(300):  # and it goes on while the disk stays full
            assert (await charger.call("MeterValues", meter_values(tx, wh)))[0] == 3
            wh += 10
    full = [e for e in logs if e["event"] == "store.full"]
    assert full[0]["reserve_released"] is True and full[0]["dropped"], full
    assert not (small_disk / "edge.sqlite.reserve").exists()
    stopped = await charger.call(
        "StopTransaction",
        {"transactionId": tx, "meterStop": wh, "timestamp": "2026-12-04T13:00:00Z"},
    )
    assert stopped[0] == 3, stopped

    # A backup onto a full disk fails, says so, and leaves no half a copy behind.
    fill(small_disk / "filler-2")
    code, out = await edge_cli("backup", str(small_disk / "copy.sqlite"), "--config", str(config))
    assert code == 1 and "full" in out, out
    assert "copy.sqlite" not in os.listdir(small_disk)
    os.unlink(small_disk / "filler-2")

    # The site manager is told, by status, doctor and metrics.
    _, status = await api(site, "/api/v1/status")
    assert status["store"]["disk_full"] is True, status["store"]
    assert status["store"]["dropped"]["meter_values"] > 0
    code, out = await edge_cli("status", "--api", site.api)
    assert code == 0 and "DISK FULL since" in out and "free some disk space" in out, out
    code, out = await edge_cli("doctor", "--config", str(config), "--api", site.api)
    assert code != 0 and f"disk of {db}: FULL since" in out, out
    async with aiohttp.ClientSession() as http, http.get(site.api + "/metrics") as resp:
        metrics = await resp.text()
    assert "edge_store_disk_full 1.0" in metrics
    assert 'edge_store_dropped_rows{table="meter_values"}' in metrics

    # The session is whole: started, stopped, its energy.
    _, sessions = await api(site, "/api/v1/sessions?limit=5")
    [session] = sessions
    assert session["status"] == "completed" and session["energy_wh"] == wh

    # Room again: the reserve is taken back and the disk is no longer called full.
    (small_disk / "filler").unlink()

    async def recovered() -> bool:
        await charger.call("MeterValues", meter_values(tx, wh))
        _, st = await api(site, "/api/v1/status")
        return not st["store"]["disk_full"] and st["store"]["reserve_held"]

    await until(recovered, what="the store did not see the room")
    assert (small_disk / "edge.sqlite.reserve").stat().st_size == 4 << 20
    await charger.close()
