"""OCPP 2.0.1 (the `ocpp` library's ChargePoint as the station) and 2.1 (raw frames) end to end."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.client import connect

from tests.conftest import RunningSite
from tests.peer import BOOT_2, RawCharger


class Station(ChargePoint):
    """A 2.0.1 station that accepts what the CSMS asks and remembers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    @on("RequestStartTransaction")
    def request_start(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self.seen.append(("RequestStartTransaction", {"id_token": id_token, **kw}))
        return call_result.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def request_stop(self, transaction_id: str, **kw: Any) -> Any:
        self.seen.append(("RequestStopTransaction", {"transaction_id": transaction_id}))
        return call_result.RequestStopTransaction(status="Accepted")

    @on("GetVariables")
    def get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        return call_result.GetVariables(
            get_variable_result=[
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "300",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in get_variable_data
            ]
        )


@pytest.fixture
async def station(site: RunningSite) -> AsyncIterator[Station]:
    async with connect(f"{site.url}/CP201", subprotocols=["ocpp2.0.1"]) as ws:
        cs = Station("CP201", ws)
        task = asyncio.create_task(cs.start())
        booted = await cs.call(call.BootNotification(**_boot()))
        assert booted.status == "Accepted" and booted.interval == 120
        yield cs
        task.cancel()


def _boot() -> dict[str, Any]:
    return {
        "charging_station": {"vendor_name": "TestVendor", "model": "T2"},
        "reason": "PowerUp",
    }


def tx_event(event: str, seq: int, energy_wh: float, **extra: Any) -> call.TransactionEvent:
    return call.TransactionEvent(
        event_type=event,
        timestamp=f"2026-11-22T10:{seq:02d}:00Z",
        trigger_reason=extra.pop("trigger", "MeterValuePeriodic"),
        seq_no=seq,
        transaction_info={"transaction_id": "TX-A", **extra.pop("info", {})},
        evse={"id": 1, "connector_id": 1},
        meter_value=[
            {
                "timestamp": f"2026-11-22T10:{seq:02d}:00Z",
                "sampled_value": [
                    {"value": energy_wh, "measurand": "Energy.Active.Import.Register"}
                ],
            }
        ],
        **extra,
    )


async def get(site: RunningSite, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(site.api + path) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_a_transaction_with_offline_events_and_a_late_seq(
    site: RunningSite, station: Station
) -> None:
    started = await station.call(
        tx_event(
            "Started",
            0,
            10_000,
            trigger="Authorized",
            id_token={"id_token": "TAG2", "type": "ISO14443"},
        )
    )
    assert started.id_token_info["status"] == "Accepted"
    await station.call(tx_event("Updated", 2, 11_000, offline=True))  # seq 1 is late
    sessions = await get(site, "/api/v1/sessions?active=true")
    assert len(sessions) == 1
    assert sessions[0]["seq_gaps"] == [1] and sessions[0]["offline"] is True
    await station.call(tx_event("Updated", 1, 10_500, offline=True))
    await station.call(
        tx_event(
            "Ended", 3, 12_500, trigger="StopAuthorized", info={"stopped_reason": "EVDisconnected"}
        )
    )
    [session] = await get(site, "/api/v1/sessions")
    assert session["status"] == "completed" and session["transaction_id"] == "TX-A"
    assert session["seq_gaps"] == []
    assert session["energy_wh"] == 2500.0
    assert session["stop_reason"] == "EVDisconnected"
    assert session["id_tag"] == "TAG2"


async def test_commands_in_2x_terms(site: RunningSite, station: Station) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{site.api}/api/v1/stations/CP201/start", json={"connector": 1, "id_tag": "R1"}
        ) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["action"] == "RequestStartTransaction"
        assert station.seen[-1][1]["id_token"]["id_token"] == "R1"
        await station.call(tx_event("Started", 0, 0, trigger="RemoteStart"))
        async with http.post(f"{site.api}/api/v1/stations/CP201/stop", json={}) as resp:
            assert resp.status == 200
        assert station.seen[-1] == ("RequestStopTransaction", {"transaction_id": "TX-A"})
        async with http.post(
            f"{site.api}/api/v1/stations/CP201/config_get",
            json={"key": "OCPPCommCtrlr.HeartbeatInterval"},
        ) as resp:
            body = await resp.json()
            assert body["response"]["getVariableResult"][0]["attributeValue"] == "300"


async def test_v21_station_is_served_in_its_own_version(site: RunningSite) -> None:
    cs = await RawCharger.connect(site.url, "CP21", "2.1")
    assert cs.ws.subprotocol == "ocpp2.1"
    boot = await cs.call("BootNotification", BOOT_2)
    assert boot[0] == 3 and boot[2]["status"] == "Accepted"
    needs = await cs.call(
        "NotifyEVChargingNeeds",
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_single_phase"}},
    )
    assert needs[0] == 3 and needs[2]["status"] == "NoChargingProfile"
    cert = await cs.call(
        "Get15118EVCertificate",
        {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
            "action": "Install",
            "exiRequest": "AAAA",
        },
    )
    assert cert[0] == 3 and cert[2]["status"] == "Failed"
    # 2.1 SEND (type 6) is never answered; the next CALL still is.
    stream = {"id": 1, "pending": 0, "basetime": "2026-11-22T10:00:00Z", "data": []}
    await cs.ws.send(orjson.dumps([6, "s1", "NotifyPeriodicEventStream", stream]))
    beat = await cs.call("Heartbeat", {})
    assert beat[0] == 3
    await cs.close()


async def test_every_reply_was_committed_first(site: RunningSite, station: Station) -> None:
    await station.call(tx_event("Started", 0, 5_000, trigger="CablePluggedIn"))
    # Read the file with an independent connection: what the station was told is on disk.
    with sqlite3.connect(site.db) as db:
        rows = db.execute("SELECT transaction_id, status FROM sessions").fetchall()
        types = [r[0] for r in db.execute("SELECT type FROM outbox ORDER BY id")]
    assert rows == [("TX-A", "active")]
    assert types[-1] == "transaction.started" and "station.boot" in types


async def test_a_started_that_arrives_after_its_ended_is_not_shown_active(
    site: RunningSite,
) -> None:
    cs = await RawCharger.connect(site.url, "CP201", "2.0.1")
    await cs.call("BootNotification", BOOT_2)

    def event(kind: str, seq: int) -> dict[str, Any]:
        return {
            "eventType": kind,
            "timestamp": f"2026-11-22T10:0{seq}:00Z",
            "triggerReason": "Authorized" if kind == "Started" else "StopAuthorized",
            "seqNo": seq,
            "transactionInfo": {"transactionId": "LATE"},
            "offline": True,
            "evse": {"id": 1, "connectorId": 1},
        }

    assert (await cs.call("TransactionEvent", event("Ended", 1)))[0] == 3
    assert (await cs.call("TransactionEvent", event("Started", 0)))[0] == 3
    assert await get(site, "/api/v1/sessions?active=true") == []
    assert site.daemon.registry.active_sessions("CP201") == []
    [session] = await get(site, "/api/v1/sessions")
    assert session["status"] == "completed" and session["seq_gaps"] == []
    await cs.close()
