"""Site meters in the running daemon: API, status, journal, outbox, `edge meters`, doctor."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from edge.modbus.profile import parse_profile
from edge.sim.meter import SimBus, SimMeter
from tests.conftest import RunningSite, StartSite
from tests.test_modbus_codec import PROFILE
from tests.wait import until

GRID = {
    "voltage_l1": 231.2,
    "current_l1": 21.5,
    "power": 4950.0,
    "import_wh": 5_432_100.0,
    "export_wh": 12_000.0,
    "frequency": 50.02,
}


async def api(site: RunningSite, path: str, method: str = "GET") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, site.api + path) as resp:
        return resp.status, await resp.json()


async def edge_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},  # wide enough that table cells do not wrap
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def meters_toml(profile: Path, port: int, extra: str = "") -> str:
    return f"""
[[meters]]
id = "grid"
role = "grid"
profile = "{profile}"
host = "127.0.0.1"
port = {port}
unit = 1
poll_interval_s = 0.1
timeout_s = 0.3
journal_interval_s = 1
{extra}
"""


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "test-meter.toml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


async def test_meters_in_api_status_journal_and_outbox(
    start_site: StartSite, tmp_path: Path, profile_file: Path
) -> None:
    meter = SimMeter(parse_profile(PROFILE, "test-meter"), values=GRID)
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    site = await start_site(
        meters_toml(profile_file, port) + "\n[load]\ngrid_limit_a = 63\nstale_after_s = 1\n"
    )

    async def fresh() -> Any:
        _, found = await api(site, "/api/v1/meters")
        return found[0] if found[0]["status"] == "ok" else None

    grid = await until(fresh)
    assert grid["profile"] == str(profile_file) and grid["role"] == "grid"
    assert grid["power_w"] == pytest.approx(4950.0)
    assert grid["voltage_v"][0] == pytest.approx(231.2, rel=1e-6)
    assert grid["current_a"] == [pytest.approx(21.5), None, None]
    assert grid["import_wh"] == pytest.approx(5_432_100.0)
    assert grid["age_s"] < 2 and grid["ok"] is True and grid["last_error"] is None
    _, status = await api(site, "/api/v1/status")
    assert status["load"]["import_a"][0] == pytest.approx(21.5)
    assert status["load"]["load_unknown"] is False

    # journaled (downsampled) and enqueued for the cloud in the same transaction
    def journal() -> tuple[list[Any], list[Any]]:
        db = sqlite3.connect(site.db)
        try:
            rows = db.execute("SELECT data FROM site_meter_samples").fetchall()
            box = db.execute(
                "SELECT station, type, data FROM outbox WHERE type = 'meter.values'"
            ).fetchall()
        finally:
            db.close()
        return rows, box

    async def journaled() -> Any:
        rows, box = journal()
        return (rows, box) if rows and box else None

    rows, box = await until(journaled)
    record = orjson.loads(box[0][2])
    assert box[0][0] is None and record["meter"] == "grid" and record["role"] == "grid"
    assert record["values"]["power"] == pytest.approx(4950.0)
    assert site.daemon.meters is not None
    track = site.daemon.meters.board.tracks["grid"]

    async def polled() -> bool:
        return track.polls >= 15

    await until(polled)
    rows, _ = journal()
    assert len(rows) <= 3 < track.polls, "downsampled: one journal row per journal_interval_s"

    # the meter dies: failing with its error, and the grid import becomes unknown load
    await sim.stop()

    async def failing() -> Any:
        _, found = await api(site, "/api/v1/meters/grid")
        return found if found["status"] == "failing" else None

    grid = await until(failing)
    assert "no valid answer" in grid["last_error"] or "connect" in grid["last_error"]
    _, status = await api(site, "/api/v1/status")
    assert status["load"]["import_a"] == [None, None, None] or not status["load"]["load_unknown"]

    async def unknown() -> Any:
        _, status = await api(site, "/api/v1/status")
        return status["load"]["load_unknown"]

    assert await until(unknown, timeout=15), "a stale grid meter is unknown load"
    async with aiohttp.ClientSession() as http, http.get(site.api + "/metrics") as resp:
        text = await resp.text()
    assert 'edge_meter_ok{meter="grid",role="grid"} 0.0' in text
    assert 'edge_meter_polls{meter="grid",result="failed"}' in text
    code, missing = await api(site, "/api/v1/meters/nope")
    assert code == 404 and missing["error"] == "unknown_meter"


async def test_read_now_judges_the_values(
    start_site: StartSite, tmp_path: Path, profile_file: Path
) -> None:
    meter = SimMeter(parse_profile(PROFILE, "test-meter"), values=dict(GRID, voltage_l1=150.0))
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    site = await start_site(meters_toml(profile_file, port))
    code, result = await api(site, "/api/v1/meters/grid/read", "POST")
    assert code == 200, result
    assert result["values"]["power"] == pytest.approx(4950.0)
    assert any("voltage_l1 150.0 V is outside" in p for p in result["problems"])
    meter.fault = "exception"
    code, result = await api(site, "/api/v1/meters/grid/read", "POST")
    assert code == 502 and result["error"] == "device_error"
    assert "grid" in result["message"] and "Server Device Failure" in result["message"]
    await sim.stop()


async def test_edge_meters_and_doctor_from_the_cli(
    start_site: StartSite, tmp_path: Path, profile_file: Path
) -> None:
    meter = SimMeter(parse_profile(PROFILE, "test-meter"), values=GRID)
    sim = SimBus([meter])
    port = await sim.serve_tcp()
    site = await start_site(meters_toml(profile_file, port))
    await until(lambda: _ok(site))
    code, out = await edge_cli("meters", "--api", site.api)
    assert code == 0, out
    assert "grid" in out and "ok" in out and "4950" in out
    code, out = await edge_cli("meters", "--api", site.api, "--json")
    assert code == 0 and orjson.loads(out)[0]["power_w"] == pytest.approx(4950.0)

    config = site.config_path
    code, out = await edge_cli("doctor", "--config", str(config), "--api", site.api)
    line = next(x for x in out.splitlines() if "meter grid" in x)
    assert line.startswith("✓") and "231.2 V" in line and "4.95 kW" in line, out

    # with no daemon running, the doctor reads the meter itself
    meter.set(voltage_l1=290.0)
    code, out = await edge_cli("doctor", "--config", str(config), "--api", "http://127.0.0.1:9")
    assert code == 1
    assert "✓ meter grid" in out and "✗ meter grid: implausible: voltage_l1 290.0 V" in out, out
    await sim.stop()
    code, out = await edge_cli("doctor", "--config", str(config), "--api", "http://127.0.0.1:9")
    assert "✗ meter grid" in out and "no reading" in out, out


async def _ok(site: RunningSite) -> bool:
    _, found = await api(site, "/api/v1/meters")
    return bool(found and found[0]["status"] == "ok")
