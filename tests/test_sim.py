"""The simulator against the real daemon: every message it sends passes schema validation
(a CALLERROR would raise CallFailed), and it follows the central system's commands."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from edge.sim.charger import SimCharger, SimStation
from tests.conftest import RunningSite


async def post(site: RunningSite, station: str, command: str, body: dict[str, Any]) -> Any:
    url = f"{site.api}/api/v1/stations/{station}/{command}"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def sessions(site: RunningSite) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/api/v1/sessions") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("station", "version"), [("CP16", "1.6"), ("CP201", "2.0.1"), ("CP21", "2.1")]
)
async def test_a_simulated_session_in_each_version(
    site: RunningSite, station: str, version: str
) -> None:
    charger = SimCharger(SimStation(id=station, version=version, meter_interval_s=3600), site.url)
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        await charger.plug_in(1)
        tx = await charger.start(1, "TAG9")
        assert tx is not None
        await charger.send_meter(1)
        await charger.stop(1, "EVDisconnected")
        [session] = await sessions(site)
        assert session["status"] == "completed" and session["station"] == station
        assert session["id_tag"] == "TAG9" and session["stop_reason"] == "EVDisconnected"
        assert session["energy_wh"] is not None and session["energy_wh"] >= 0
    finally:
        await charger.close()
        runner.cancel()


@pytest.mark.parametrize(
    ("station", "version"), [("CP16", "1.6"), ("CP201", "2.0.1"), ("CP21", "2.1")]
)
async def test_the_simulator_obeys_commands(site: RunningSite, station: str, version: str) -> None:
    charger = SimCharger(SimStation(id=station, version=version, meter_interval_s=3600), site.url)
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        assert (await post(site, station, "limit", {"amps": 10}))["accepted"]
        await post(site, station, "start", {"connector": 1, "id_tag": "REMOTE"})
        await until(lambda: charger.connectors[1].transaction is not None)
        assert charger.draw_a(1) == 10.0
        await until(lambda: bool(site.daemon.registry.active_sessions(station)))
        assert (await post(site, station, "stop", {}))["accepted"]
        await until(lambda: charger.connectors[1].transaction is None)
        for command, args in [
            ("trigger", {"message": "Heartbeat"}),
            ("clear_cache", {}),
            ("unlock", {"connector": 1}),
            ("firmware", {"url": "http://f/x"}),
            ("diagnostics", {"url": "ftp://d/"}),
        ]:
            assert (await post(site, station, command, args))["accepted"], command
        key = "HeartbeatInterval" if version == "1.6" else "OCPPCommCtrlr.HeartbeatInterval"
        assert (await post(site, station, "config_set", {"key": key, "value": "90"}))["accepted"]
        got = await post(site, station, "config_get", {"key": key})
        assert "90" in str(got["response"])
        await post(site, station, "reset", {"hard": True})
        await until(lambda: not charger.connected)
        await charger.wait_connected(timeout=10)
    finally:
        await charger.close()
        runner.cancel()


async def test_the_gateway_local_list_is_pushed_to_a_charger(site: RunningSite) -> None:
    charger = SimCharger(SimStation(id="CP201", version="2.0.1", meter_interval_s=3600), site.url)
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        async with aiohttp.ClientSession() as http:
            for tag in ("CARD1", "CARD2"):
                url = f"{site.api}/api/v1/auth/tags/{tag}"
                async with http.put(url, json={"status": "Accepted"}) as resp:
                    assert resp.status == 200
        answer = await post(site, "CP201", "send_local_list", {})
        assert answer["accepted"] and answer["action"] == "SendLocalList"
        action, payload = charger.received[-1]
        tokens = [e["idToken"]["idToken"] for e in payload["localAuthorizationList"]]
        assert action == "SendLocalList" and tokens == ["CARD1", "CARD2"]
        assert payload["updateType"] == "Full" and payload["versionNumber"] >= 2
    finally:
        await charger.close()
        runner.cancel()
