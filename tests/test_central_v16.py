"""OCPP 1.6J end to end: the `ocpp` library's ChargePoint as charger, the HTTP API as operator."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

from tests.conftest import RunningSite, StartSite, site_config
from tests.test_meters_daemon import edge_cli


class Charger(ChargePoint):
    """A 1.6 charger that accepts what the central system asks and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @on(Action.remote_start_transaction)
    def remote_start(self, id_tag: str, **kw: Any) -> call_result.RemoteStartTransaction:
        self.seen.append(("RemoteStartTransaction", {"id_tag": id_tag, **kw}))
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    def remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        self.seen.append(("RemoteStopTransaction", {"transaction_id": transaction_id}))
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.reset)
    def reset(self, type: str) -> call_result.Reset:
        self.seen.append(("Reset", {"type": type}))
        return call_result.Reset(status="Accepted")

    @on(Action.set_charging_profile)
    def set_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self.seen.append(("SetChargingProfile", cs_charging_profiles))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_configuration)
    def get_configuration(self, key: list[str] | None = None) -> Any:
        return call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "120"}],
            unknown_key=[k for k in (key or []) if k != "HeartbeatInterval"],
        )

    @on(Action.unlock_connector)
    def unlock(self, connector_id: int) -> Any:
        return call_result.UnlockConnector(status="UnlockFailed")


@pytest.fixture
async def charger(site: RunningSite) -> AsyncIterator[Charger]:
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:
        cp = Charger("CP16", ws)
        task = asyncio.create_task(cp.start())
        yield cp
        task.cancel()


async def api_get(site: RunningSite, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(site.api + path) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def api_post(site: RunningSite, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(site.api + path, json=body) as resp:
        return resp.status, await resp.json()


async def boot(cp: Charger) -> Any:
    return await cp.call(
        call.BootNotification(charge_point_model="T1", charge_point_vendor="TestVendor")
    )


async def test_a_session_is_journaled_and_shown(site: RunningSite, charger: Charger) -> None:
    booted = await boot(charger)
    assert booted.status == "Accepted" and booted.interval == 120
    await charger.call(
        call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
    )
    auth = await charger.call(call.Authorize(id_tag="TAG1"))
    assert auth.id_tag_info["status"] == "Accepted"  # open site: no tags, no uplink
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-11-22T10:00:00Z"
        )
    )
    tx = started.transaction_id
    assert isinstance(tx, int) and started.id_tag_info["status"] == "Accepted"
    await charger.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                {
                    "timestamp": "2026-11-22T10:05:00Z",
                    "sampledValue": [
                        {
                            "value": "1.5",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "kWh",
                        },
                        {
                            "value": "15.8",
                            "measurand": "Current.Import",
                            "phase": "L1",
                            "unit": "A",
                        },
                    ],
                }
            ],
        )
    )
    active = await api_get(site, "/api/v1/sessions?active=true")
    assert [s["id"] for s in active] == [tx]
    assert active[0]["energy_wh"] == 500.0
    await charger.call(
        call.StopTransaction(
            transaction_id=tx,
            meter_stop=4200,
            timestamp="2026-11-22T11:00:00Z",
            reason="EVDisconnected",
        )
    )
    session = await api_get(site, f"/api/v1/sessions/{tx}")
    assert session["status"] == "completed"
    assert session["energy_wh"] == 3200.0
    assert session["stop_reason"] == "EVDisconnected"
    assert session["id_tag"] == "TAG1"
    assert session["started_at"] == "2026-11-22T10:00:00.000Z"
    station = await api_get(site, "/api/v1/stations/CP16")
    assert station["connected"] and station["vendor"] == "TestVendor"
    assert station["ocpp_version"] == "1.6"
    connector = {"id": 1, "status": "Preparing", "error_code": "NoError", "limit_a": None}
    assert [{k: c[k] for k in connector} for c in station["connectors"]] == [connector]


async def test_messages_with_transaction_id_minus_one_complete_the_session(
    site: RunningSite, charger: Charger
) -> None:
    # OCPP 1.6 errata §3.18: our StartTransaction.conf never reached the charger, so its
    # later messages carry transactionId -1; they belong to the session all the same.
    await boot(charger)
    start = call.StartTransaction(
        connector_id=1, id_tag="TAG1", meter_start=1000, timestamp="2026-11-22T10:00:00Z"
    )
    tx = (await charger.call(start)).transaction_id
    reading = {
        "timestamp": "2026-11-22T10:05:00Z",
        "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}],
    }
    await charger.call(call.MeterValues(connector_id=1, transaction_id=-1, meter_value=[reading]))
    [active] = await api_get(site, "/api/v1/sessions?active=true")
    assert (active["id"], active["energy_wh"]) == (tx, 500.0)
    stop = call.StopTransaction(
        transaction_id=-1, meter_stop=4200, timestamp="2026-11-22T11:00:00Z"
    )
    await charger.call(stop)
    [session] = await api_get(site, "/api/v1/sessions")
    assert (session["id"], session["status"], session["energy_wh"]) == (tx, "completed", 3200.0)


async def test_sessions_are_filtered_by_time_in_the_site_zone_and_exported_as_csv(
    start_site: StartSite, tmp_path: Path
) -> None:
    text = site_config(tmp_path).replace(
        'id = "test-site"', 'id = "test-site"\ntimezone = "Europe/Berlin"'
    )
    site = await start_site(text=text)
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:
        cp = Charger("CP16", ws)
        task = asyncio.create_task(cp.start())
        await boot(cp)
        ids = {}
        # 00:30 on Nov 22 in Berlin, 11:00 the same day, and 09:00 on Nov 23
        for tag, at in (
            ("A", "2026-11-21T23:30:00Z"),
            ("B", "2026-11-22T10:00:00Z"),
            ("A", "2026-11-23T08:00:00Z"),
        ):
            start = call.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=at)
            tx = (await cp.call(start)).transaction_id
            ids[at] = tx
            await cp.call(call.StopTransaction(transaction_id=tx, meter_stop=1500, timestamp=at))
        task.cancel()
    day = await api_get(site, "/api/v1/sessions?since=2026-11-22&until=2026-11-23")
    assert [s["id"] for s in day] == [ids["2026-11-22T10:00:00Z"], ids["2026-11-21T23:30:00Z"]]
    card = await api_get(site, "/api/v1/sessions?id_tag=A&since=2026-11-22T12:00")
    assert [s["id"] for s in card] == [ids["2026-11-23T08:00:00Z"]]
    async with (
        aiohttp.ClientSession() as http,
        http.get(site.api + "/api/v1/sessions?since=last+week") as resp,
    ):
        assert resp.status == 400
        assert "since: not a date or time: 'last week'" in (await resp.json())["message"]
    code, out = await edge_cli(
        "sessions", "--api", site.api, "--csv", "--since", "2026-11-22", "--until", "2026-11-23"
    )
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["id"], r["id_tag"], r["energy_wh"], r["status"]) for r in rows] == [
        (str(ids["2026-11-22T10:00:00Z"]), "B", "1500.0", "completed"),
        (str(ids["2026-11-21T23:30:00Z"]), "A", "1500.0", "completed"),
    ]
    assert rows[0]["started_at"] == "2026-11-22T10:00:00.000Z"
    # The table shows the site's time, and says so; the JSON and CSV keep UTC.
    config = site.config_path
    code, out = await edge_cli("sessions", "--config", str(config), "--api", site.api)
    assert code == 0 and "times in Europe/Berlin" in out and "2026-11-22 11:00:00" in out, out
    assert "3 session(s), 4.50 kWh" in out, "the sum of what is listed, for billing"


async def test_a_resent_start_gets_the_same_transaction_id(charger: Charger) -> None:
    await boot(charger)
    start = call.StartTransaction(
        connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-22T10:00:00Z"
    )
    first = await charger.call(start)
    again = await charger.call(start)
    assert first.transaction_id == again.transaction_id


async def test_commands_reach_the_charger_and_report_its_answer(
    site: RunningSite, charger: Charger
) -> None:
    await boot(charger)
    status, body = await api_post(
        site, "/api/v1/stations/CP16/start", {"connector": 1, "id_tag": "REMOTE1"}
    )
    assert status == 200 and body["accepted"] and body["action"] == "RemoteStartTransaction"
    assert charger.seen[-1] == ("RemoteStartTransaction", {"id_tag": "REMOTE1", "connector_id": 1})

    status, body = await api_post(site, "/api/v1/stations/CP16/reset", {"hard": True})
    assert status == 200 and charger.seen[-1] == ("Reset", {"type": "Hard"})

    status, body = await api_post(site, "/api/v1/stations/CP16/limit", {"amps": 16})
    assert status == 200 and body["accepted"]
    profile = charger.seen[-1][1]  # the library hands handlers snake_case keys
    assert profile["charging_profile_purpose"] == "TxDefaultProfile"
    schedule = profile["charging_schedule"]
    assert schedule["charging_rate_unit"] == "A"
    assert schedule["charging_schedule_period"][0]["limit"] == 16

    status, body = await api_post(
        site, "/api/v1/stations/CP16/config_get", {"key": "HeartbeatInterval"}
    )
    assert status == 200
    assert body["response"]["configurationKey"][0]["value"] == "120"

    status, body = await api_post(site, "/api/v1/stations/CP16/unlock", {"connector": 1})
    assert status == 200 and body["accepted"] is False and body["status"] == "UnlockFailed"


async def test_stop_finds_the_active_session(site: RunningSite, charger: Charger) -> None:
    await boot(charger)
    status, body = await api_post(site, "/api/v1/stations/CP16/stop", {})
    assert status == 400 and "no active session" in body["message"]
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-22T10:00:00Z"
        )
    )
    status, body = await api_post(site, "/api/v1/stations/CP16/stop", {})
    assert status == 200 and body["accepted"]
    assert charger.seen[-1] == ("RemoteStopTransaction", {"transaction_id": started.transaction_id})


async def test_commands_to_absent_stations_fail_distinctly(site: RunningSite) -> None:
    status, body = await api_post(site, "/api/v1/stations/CP16/reset", {})
    assert status == 409 and "not connected" in body["message"]
    status, _ = await api_post(site, "/api/v1/stations/NOPE/reset", {})
    assert status == 404


async def test_the_local_list_decides_when_tags_are_configured(start_site: StartSite) -> None:
    site = await start_site(
        '\n[[auth.tags]]\nid_tag = "GOOD"\n\n[[auth.tags]]\nid_tag = "BAD"\nstatus = "Blocked"\n'
    )
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:
        cp = Charger("CP16", ws)
        task = asyncio.create_task(cp.start())
        await boot(cp)
        results = {}
        for tag in ("GOOD", "BAD", "STRANGER"):
            results[tag] = (await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
        assert results == {"GOOD": "Accepted", "BAD": "Blocked", "STRANGER": "Invalid"}
        async with (
            aiohttp.ClientSession() as http,
            http.put(f"{site.api}/api/v1/auth/tags/STRANGER", json={"status": "Accepted"}) as resp,
        ):
            assert resp.status == 200
        assert (await cp.call(call.Authorize(id_tag="STRANGER"))).id_tag_info[
            "status"
        ] == "Accepted"
        task.cancel()
