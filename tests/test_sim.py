"""The charger simulator against independent central systems.

The `ocpp` library plays the CSMS for 1.6 and 2.0.1: it validates every message the simulator
sends, and every answer it gives, against the official schemas. For 2.1 a raw OCPP-J peer
checks the frames with `jsonschema` (the library's 2.1 peer does not answer unknown actions).
Further down, the simulator runs against edge's own daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import ocpp
import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Library16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Library201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from edge.sim.charger import SimCharger, SimStation
from edge.sim.fleet import fleet_stations, run_fleet
from edge.sim.profiles import Profile, parse_period, parse_profile
from tests.conftest import RunningSite, StartSite, site_config
from tests.test_meters_daemon import api, edge_cli
from tests.wait import until

Payload = dict[str, Any]


def now_text(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


class Traffic:
    """Every CALL the simulators sent, and every CALLERROR the peer answered with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Payload]] = []
        self.errors: list[str] = []
        self._changed = asyncio.Event()

    def record(self, station: str, raw: str | bytes) -> None:
        frame = json.loads(raw)
        if frame[0] == 2:
            self.calls.append((station, frame[2], frame[3]))
            self._changed.set()

    def of(self, station: str, action: str | None = None) -> list[tuple[str, Payload]]:
        return [(a, p) for s, a, p in self.calls if s == station and action in (None, a)]

    def statuses(self, station: str, action: str) -> list[str]:
        return [p["status"] for _, p in self.of(station, action)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if not predicate():
                    await self._changed.wait()


class Peer16(Library16):
    """An OCPP 1.6 central system that accepts everything and records the traffic."""

    def __init__(self, station: str, ws: ServerConnection, traffic: Traffic) -> None:
        super().__init__(station, ws, response_timeout=5)
        self.traffic = traffic
        self.tx_ids = itertools.count(101)

    async def route_message(self, raw_msg: str) -> None:
        self.traffic.record(self.id, raw_msg)
        await super().route_message(raw_msg)

    async def _send(self, message: str) -> None:
        if message.startswith("[4"):
            self.traffic.errors.append(message)
        await super()._send(message)

    @on("BootNotification")
    def boot(self, **_: Any) -> result16.BootNotification:
        return result16.BootNotification(current_time=now_text(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> result16.Heartbeat:
        return result16.Heartbeat(current_time=now_text())

    @on("StatusNotification")
    def status(self, **_: Any) -> result16.StatusNotification:
        return result16.StatusNotification()

    @on("Authorize")
    def authorize(self, **_: Any) -> result16.Authorize:
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def start_tx(self, **_: Any) -> result16.StartTransaction:
        return result16.StartTransaction(
            transaction_id=next(self.tx_ids), id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction")
    def stop_tx(self, **_: Any) -> result16.StopTransaction:
        return result16.StopTransaction()

    @on("MeterValues")
    def meter(self, **_: Any) -> result16.MeterValues:
        return result16.MeterValues()

    @on("FirmwareStatusNotification")
    def firmware(self, **_: Any) -> result16.FirmwareStatusNotification:
        return result16.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def diagnostics(self, **_: Any) -> result16.DiagnosticsStatusNotification:
        return result16.DiagnosticsStatusNotification()


class Peer201(Library201):
    """An OCPP 2.0.1 central system that accepts everything and records the traffic."""

    def __init__(self, station: str, ws: ServerConnection, traffic: Traffic) -> None:
        super().__init__(station, ws, response_timeout=5)
        self.traffic = traffic

    async def route_message(self, raw_msg: str) -> None:
        self.traffic.record(self.id, raw_msg)
        await super().route_message(raw_msg)

    async def _send(self, message: str) -> None:
        if message.startswith("[4"):
            self.traffic.errors.append(message)
        await super()._send(message)

    @on("BootNotification")
    def boot(self, **_: Any) -> result201.BootNotification:
        return result201.BootNotification(current_time=now_text(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> result201.Heartbeat:
        return result201.Heartbeat(current_time=now_text())

    @on("StatusNotification")
    def status(self, **_: Any) -> result201.StatusNotification:
        return result201.StatusNotification()

    @on("Authorize")
    def authorize(self, **_: Any) -> result201.Authorize:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def transaction(self, **_: Any) -> result201.TransactionEvent:
        return result201.TransactionEvent()

    @on("MeterValues")
    def meter(self, **_: Any) -> result201.MeterValues:
        return result201.MeterValues()

    @on("FirmwareStatusNotification")
    def firmware(self, **_: Any) -> result201.FirmwareStatusNotification:
        return result201.FirmwareStatusNotification()

    @on("LogStatusNotification")
    def log_status(self, **_: Any) -> result201.LogStatusNotification:
        return result201.LogStatusNotification()


Peer = Peer16 | Peer201


class LibraryCsms:
    """Serves 1.6 and 2.0.1 on 127.0.0.1; one library peer per connection."""

    peer16: type[Peer16] = Peer16  # a subclass answers 1.6 differently

    def __init__(self) -> None:
        self.traffic = Traffic()
        self.peers: dict[str, list[Peer]] = {}
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def peer(self, station: str) -> Peer:
        return self.peers[station][-1]

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        station = ws.request.path.rsplit("/", 1)[-1]
        peer: Peer
        if ws.subprotocol == "ocpp1.6":
            peer = self.peer16(station, ws, self.traffic)
        else:
            peer = Peer201(station, ws, self.traffic)
        self.peers.setdefault(station, []).append(peer)
        with contextlib.suppress(ConnectionClosed):
            await peer.start()


@pytest.fixture
async def csms() -> AsyncIterator[LibraryCsms]:
    peer = LibraryCsms()
    protocols = [Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")]
    async with serve(peer.handle, "127.0.0.1", 0, subprotocols=protocols) as server:
        peer.port = server.sockets[0].getsockname()[1]
        yield peer


@contextlib.asynccontextmanager
async def online(charger: SimCharger) -> AsyncIterator[SimCharger]:
    runner = asyncio.create_task(charger.run())
    try:
        await charger.wait_connected()
        yield charger
    finally:
        await charger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def station(version: str, **kw: Any) -> SimStation:
    # Periodic traffic off, so each test sees exactly the messages it causes.
    return SimStation(id=f"S{version.replace('.', '')}", version=version, meter_interval_s=0, **kw)


def sampled(payload: Payload) -> dict[tuple[str, str | None], float]:
    """{(measurand, phase): value} of a MeterValues / TransactionEvent payload."""
    [meter] = payload["meterValue"]
    return {(s["measurand"], s.get("phase")): float(s["value"]) for s in meter["sampledValue"]}


def tx_default_profile(version: str, limit: float, unit: str = "A", **period: Any) -> Payload:
    schedule: Payload = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, **period}],
    }
    common = {"stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile"}
    if version == "1.6":
        return {
            "chargingProfileId": 7,
            "chargingProfileKind": "Relative",
            "chargingSchedule": schedule,
            **common,
        }
    return {
        "id": 7,
        "chargingProfileKind": "Relative",
        "chargingSchedule": [{"id": 1, **schedule}],
        **common,
    }


# -- 1.6 and 2.0.1 against the ocpp library ----------------------------------------------


async def test_a_1_6_session_arrives_in_order_and_valid(csms: LibraryCsms) -> None:
    async with online(SimCharger(station("1.6"), csms.url)) as charger:
        await charger.plug_in(1)
        tx = await charger.start(1, "CARD1")
        await charger.send_meter(1)
        await charger.stop(1, "EVDisconnected")
    calls = csms.traffic.of("S16")
    assert [a for a, _ in calls] == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "StatusNotification",
        "MeterValues",
        "StopTransaction",
        "StatusNotification",
        "StatusNotification",
    ]
    statuses = [p["status"] for a, p in calls if a == "StatusNotification"]
    assert statuses == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    assert tx == "101" and calls[6][1]["transactionId"] == 101
    start, meter, stop = calls[4][1], sampled(calls[6][1]), calls[7][1]
    assert meter[("Current.Import", "L1")] == meter[("Current.Import", "L3")] == 32.0
    assert meter[("Power.Active.Import", None)] == 32.0 * 230 * 3
    assert 0 < meter[("SoC", None)] <= 100
    assert start["meterStart"] <= meter[("Energy.Active.Import.Register", None)]
    assert meter[("Energy.Active.Import.Register", None)] <= stop["meterStop"] + 1
    assert stop["reason"] == "EVDisconnected" and stop["idTag"] == "CARD1"
    assert csms.traffic.errors == []


async def test_a_2_0_1_session_arrives_in_order_and_valid(csms: LibraryCsms) -> None:
    async with online(SimCharger(station("2.0.1"), csms.url)) as charger:
        await charger.plug_in(1)
        tx = await charger.start(1, "CARD2")
        await charger.send_meter(1)
        await charger.stop(1)
    calls = csms.traffic.of("S201")
    assert [a for a, _ in calls] == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "TransactionEvent",
        "TransactionEvent",
        "TransactionEvent",
        "StatusNotification",
    ]
    statuses = [p["connectorStatus"] for a, p in calls if a == "StatusNotification"]
    assert statuses == ["Available", "Occupied", "Available"]
    events = [p for a, p in calls if a == "TransactionEvent"]
    assert [(e["eventType"], e["seqNo"]) for e in events] == [
        ("Started", 0),
        ("Updated", 1),
        ("Ended", 2),
    ]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {tx}
    assert events[0]["triggerReason"] == "Authorized"
    assert events[0]["idToken"] == {"idToken": "CARD2", "type": "ISO14443"}
    assert events[1]["triggerReason"] == "MeterValuePeriodic"
    assert events[2]["triggerReason"] == "StopAuthorized"
    assert events[2]["transactionInfo"]["stoppedReason"] == "Local"
    assert events[0]["evse"] == {"id": 1, "connectorId": 1}
    energy = [sampled(e)[("Energy.Active.Import.Register", None)] for e in events]
    assert energy == sorted(energy), "the register never runs backwards"
    assert sampled(events[1])[("Current.Import", "L2")] == 32.0
    assert csms.traffic.errors == []


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_remote_start_and_stop_from_the_csms(csms: LibraryCsms, version: str) -> None:
    async with online(SimCharger(station(version), csms.url)) as charger:
        sid, peer = charger.cfg.id, csms.peer(charger.cfg.id)
        if isinstance(peer, Peer16):
            started = "StartTransaction"
            answer = await peer.call(call16.RemoteStartTransaction(id_tag="REMOTE", connector_id=1))
        else:
            started = "TransactionEvent"
            token = {"idToken": "REMOTE", "type": "ISO14443"}
            request = call201.RequestStartTransaction(id_token=token, remote_start_id=42, evse_id=1)
            answer = await peer.call(request)
        assert answer.status == "Accepted"
        await csms.traffic.until(lambda: bool(csms.traffic.of(sid, started)))
        [(_, first)] = csms.traffic.of(sid, started)
        await csms.traffic.until(lambda: charger.connectors[1].transaction is not None)
        tx = charger.connectors[1].transaction
        assert tx is not None and charger.draw_a(1) == 32.0
        if isinstance(peer, Peer16):
            assert first["idTag"] == "REMOTE"
            assert (await peer.call(call16.RemoteStopTransaction(transaction_id=999))).status == (
                "Rejected"
            )
            answer = await peer.call(call16.RemoteStopTransaction(transaction_id=int(tx)))
            stopped = "StopTransaction"
        else:
            assert first["triggerReason"] == "RemoteStart"
            assert first["transactionInfo"]["remoteStartId"] == 42
            assert first["idToken"]["idToken"] == "REMOTE"
            answer = await peer.call(call201.RequestStopTransaction(transaction_id=tx))
            stopped = "TransactionEvent"
        assert answer.status == "Accepted"
        await csms.traffic.until(lambda: charger.connectors[1].transaction is None)
        last = csms.traffic.of(sid, stopped)[-1][1]
        reason = last["reason"] if version == "1.6" else last["transactionInfo"]["stoppedReason"]
        assert reason == "Remote" and charger.draw_a(1) == 0.0
    assert csms.traffic.errors == []


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_10_a_profile_limits_the_draw(csms: LibraryCsms, version: str) -> None:
    async with online(SimCharger(station(version), csms.url)) as charger:
        peer = csms.peer(charger.cfg.id)
        await charger.start(1, "CARD3")
        assert charger.draw_a(1) == 32.0
        if isinstance(peer, Peer16):
            request: Any = call16.SetChargingProfile(
                connector_id=0, cs_charging_profiles=tx_default_profile(version, 10.0)
            )
        else:  # 6900 W over 230 V and three phases is 10 A per phase
            profile = tx_default_profile(version, 6900.0, "W")
            request = call201.SetChargingProfile(evse_id=0, charging_profile=profile)
        assert (await peer.call(request)).status == "Accepted"
        assert charger.limit_a == {1: 10.0}
        assert charger.draw_a(1) == 10.0
        if isinstance(peer, Peer201):
            await csms.traffic.until(
                lambda: any(
                    p.get("triggerReason") == "ChargingRateChanged"
                    for _, p in csms.traffic.of(charger.cfg.id, "TransactionEvent")
                )
            )
            request = call201.GetCompositeSchedule(duration=600, evse_id=1)
            assert (await peer.call(request)).schedule["charging_schedule_period"][0]["limit"] == 10
            request = call201.ClearChargingProfile(charging_profile_id=7)
        else:
            request = call16.ClearChargingProfile(id=7)
        assert (await peer.call(request)).status == "Accepted"
        assert charger.draw_a(1) == 32.0
    assert csms.traffic.errors == []


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_reset_ends_the_session_and_boots_again(csms: LibraryCsms, version: str) -> None:
    async with online(SimCharger(station(version), csms.url)) as charger:
        sid, peer = charger.cfg.id, csms.peer(charger.cfg.id)
        await charger.start(1, "CARD4")
        if isinstance(peer, Peer16):
            answer = await peer.call(call16.Reset(type="Hard"))
        else:
            answer = await peer.call(call201.Reset(type="Immediate"))
        assert answer.status == "Accepted"
        await csms.traffic.until(lambda: len(csms.traffic.of(sid, "BootNotification")) == 2)
        await charger.wait_connected()
        assert len(csms.peers[sid]) == 2 and charger.connectors[1].transaction is None
        if version == "1.6":
            assert csms.traffic.of(sid, "StopTransaction")[-1][1]["reason"] == "HardReset"
        else:
            ended = csms.traffic.of(sid, "TransactionEvent")[-1][1]
            assert ended["eventType"] == "Ended" and ended["triggerReason"] == "ResetCommand"
            assert csms.traffic.of(sid, "BootNotification")[-1][1]["reason"] == "RemoteReset"
    assert csms.traffic.errors == []


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_an_unknown_action_gets_not_implemented(csms: LibraryCsms, version: str) -> None:
    async with online(SimCharger(station(version), csms.url)) as charger:
        peer = csms.peer(charger.cfg.id)
        if isinstance(peer, Peer16):
            request: Any = call16.ReserveNow(
                connector_id=1, expiry_date=now_text(600), id_tag="X", reservation_id=1
            )
        else:
            token = {"idToken": "X", "type": "ISO14443"}
            request = call201.ReserveNow(id=1, expiry_date_time=now_text(600), id_token=token)
        with pytest.raises(OcppNotImplemented):
            await peer.call(request, suppress=False)
        await charger.heartbeat()  # the connection is still fine


async def test_every_1_6_command_gets_a_valid_answer(csms: LibraryCsms) -> None:
    async with online(SimCharger(station("1.6"), csms.url)) as charger:
        peer = csms.peer("S16")
        traffic = csms.traffic

        async def ask(request: Any) -> Any:
            return await peer.call(request, suppress=False)

        got = await ask(call16.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]))
        assert got.configuration_key == [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
        ]
        assert got.unknown_key == ["NoSuchKey"]
        every = await ask(call16.GetConfiguration())
        assert {"NumberOfConnectors", "AuthorizeRemoteTxRequests", "MeterValueSampleInterval"} <= {
            k["key"] for k in every.configuration_key
        }
        change = call16.ChangeConfiguration
        assert (await ask(change(key="HeartbeatInterval", value="60"))).status == "Accepted"
        assert (await ask(change(key="NumberOfConnectors", value="4"))).status == "Rejected"
        assert (await ask(change(key="NoSuchKey", value="1"))).status == "NotSupported"
        nine = ",".join(["Voltage"] * 9)  # MeterValuesSampledDataMaxLength is 8
        assert (await ask(change(key="MeterValuesSampledData", value=nine))).status == "Rejected"
        assert charger.settings["HeartbeatInterval"].value == "60"
        assert (await ask(call16.UnlockConnector(connector_id=1))).status == "Unlocked"
        assert (await ask(call16.ClearCache())).status == "Accepted"
        entries = [{"idTag": "CARD9", "idTagInfo": {"status": "Accepted"}}]
        local = call16.SendLocalList(
            list_version=3, update_type="Full", local_authorization_list=entries
        )
        assert (await ask(local)).status == "Accepted"
        assert (await ask(call16.GetLocalListVersion())).list_version == 3
        assert (await ask(call16.DataTransfer(vendor_id="acme"))).status == "UnknownVendorId"
        schedule = await ask(call16.GetCompositeSchedule(connector_id=1, duration=60))
        assert schedule.charging_schedule["charging_schedule_period"][0]["limit"] == 32
        availability = call16.ChangeAvailability(connector_id=1, type="Inoperative")
        assert (await ask(availability)).status == "Accepted"
        await traffic.until(lambda: charger.connectors[1].status == "Unavailable")
        await ask(call16.ChangeAvailability(connector_id=1, type="Operative"))
        assert (await ask(call16.TriggerMessage(requested_message="MeterValues"))).status == (
            "Accepted"
        )
        await traffic.until(lambda: bool(traffic.of("S16", "MeterValues")))
        await ask(call16.UpdateFirmware(location="http://fw/x.bin", retrieve_date=now_text()))
        got = await ask(call16.GetDiagnostics(location="ftp://diag/"))
        assert got.file_name
        firmware, diagnostics = "FirmwareStatusNotification", "DiagnosticsStatusNotification"
        await traffic.until(
            lambda: (
                len(traffic.statuses("S16", firmware)) == 4
                and len(traffic.statuses("S16", diagnostics)) == 2
            )
        )
        assert traffic.statuses("S16", firmware) == [
            "Downloading",
            "Downloaded",
            "Installing",
            "Installed",
        ]
        assert traffic.statuses("S16", diagnostics) == ["Uploading", "Uploaded"]
    assert [p["status"] for _, p in traffic.of("S16", "StatusNotification")][-2:] == [
        "Unavailable",
        "Available",
    ]
    assert traffic.errors == []


async def test_every_2_0_1_command_gets_a_valid_answer(csms: LibraryCsms) -> None:
    async with online(SimCharger(station("2.0.1"), csms.url)) as charger:
        peer = csms.peer("S201")
        traffic = csms.traffic

        async def ask(request: Any) -> Any:
            return await peer.call(request, suppress=False)

        def variable(component: str, name: str, **extra: Any) -> Payload:
            return {"component": {"name": component}, "variable": {"name": name}, **extra}

        got = await ask(
            call201.GetVariables(
                get_variable_data=[
                    variable("OCPPCommCtrlr", "HeartbeatInterval"),
                    variable("OCPPCommCtrlr", "NoSuchVariable"),
                    variable("NoSuchCtrlr", "Enabled"),
                ]
            )
        )
        assert [
            (r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result
        ] == [
            ("Accepted", "300"),
            ("UnknownVariable", None),
            ("UnknownComponent", None),
        ]
        got = await ask(
            call201.SetVariables(
                set_variable_data=[
                    variable("SampledDataCtrlr", "TxUpdatedInterval", attribute_value="15"),
                    variable("SmartChargingCtrlr", "RateUnit", attribute_value="A"),
                ]
            )
        )
        assert [r["attribute_status"] for r in got.set_variable_result] == ["Accepted", "Rejected"]
        assert charger.settings["SampledDataCtrlr.TxUpdatedInterval"].value == "15"
        assert (await ask(call201.UnlockConnector(evse_id=1, connector_id=1))).status == "Unlocked"
        assert (await ask(call201.ClearCache())).status == "Accepted"
        entries = [
            {
                "idToken": {"idToken": "CARD9", "type": "ISO14443"},
                "idTokenInfo": {"status": "Accepted"},
            }
        ]
        local = call201.SendLocalList(
            version_number=4, update_type="Full", local_authorization_list=entries
        )
        assert (await ask(local)).status == "Accepted"
        assert charger.local_list == {"CARD9": "Accepted"}
        assert (await ask(call201.GetLocalListVersion())).version_number == 4
        assert (await ask(call201.DataTransfer(vendor_id="acme"))).status == "UnknownVendorId"
        assert (await ask(call201.ClearChargingProfile(charging_profile_id=99))).status == "Unknown"
        stop = await ask(call201.RequestStopTransaction(transaction_id="nope"))
        assert stop.status == "Rejected"
        offline = call201.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
        assert (await ask(offline)).status == "Accepted"
        await traffic.until(lambda: charger.connectors[1].status == "Unavailable")
        await ask(call201.ChangeAvailability(operational_status="Operative"))
        trigger = call201.TriggerMessage(requested_message="StatusNotification", evse={"id": 1})
        assert (await ask(trigger)).status == "Accepted"
        firmware = {"location": "http://fw/x.bin", "retrieveDateTime": now_text()}
        assert (await ask(call201.UpdateFirmware(request_id=8, firmware=firmware))).status == (
            "Accepted"
        )
        log = call201.GetLog(
            log={"remoteLocation": "ftp://logs/"}, log_type="DiagnosticsLog", request_id=9
        )
        assert (await ask(log)).status == "Accepted"
        fw, logs = "FirmwareStatusNotification", "LogStatusNotification"
        await traffic.until(
            lambda: (
                len(traffic.statuses("S201", fw)) == 4 and len(traffic.statuses("S201", logs)) == 2
            )
        )
        assert traffic.statuses("S201", logs) == ["Uploading", "Uploaded"]
        assert {p["requestId"] for _, p in traffic.of("S201", fw)} == {8}
    statuses = [p["connectorStatus"] for _, p in traffic.of("S201", "StatusNotification")]
    assert statuses[-3:] == ["Unavailable", "Available", "Available"]
    assert traffic.errors == []


# -- 2.1 against a raw peer that checks the official schemas -----------------------------

SCHEMAS_21 = Path(ocpp.__file__).parent / "v21" / "schemas"


def check21(name: str, payload: Payload) -> None:
    """Validate a 2.1 payload against its official schema (raises on any violation)."""
    schema = json.loads((SCHEMAS_21 / f"{name}.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(payload)


def answer21(action: str, boot: str = "Accepted") -> Payload:
    answers: dict[str, Payload] = {
        "BootNotification": {"currentTime": now_text(), "interval": 300, "status": boot},
        "Heartbeat": {"currentTime": now_text()},
        "Authorize": {"idTokenInfo": {"status": "Accepted"}},
    }
    return answers.get(action, {})


class RawCsms21:
    """A raw OCPP-J 2.1 central system; it may hold back its answer to chosen actions."""

    def __init__(self) -> None:
        self.traffic = Traffic()
        self.hold: set[str] = set()
        self.boot_answers = ["Accepted"]  # the last one repeats
        self.held: dict[str, str] = {}  # action -> message id
        self.results: dict[str, asyncio.Future[list[Any]]] = {}
        self.ws: ServerConnection | None = None
        self.ids = itertools.count(1)
        self.port = 0

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.ws, sid = ws, ws.request.path.rsplit("/", 1)[-1]
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                if frame[0] != 2:
                    self.results[frame[1]].set_result(frame)
                    continue
                check21(f"{frame[2]}Request", frame[3])
                self.traffic.record(sid, raw)
                if frame[2] in self.hold:
                    self.held[frame[2]] = frame[1]
                else:
                    await self.answer(frame[1], frame[2])

    async def answer(self, uid: str, action: str) -> None:
        assert self.ws is not None
        boot = self.boot_answers.pop(0) if len(self.boot_answers) > 1 else self.boot_answers[0]
        payload = answer21(action, boot)
        check21(f"{action}Response", payload)
        await self.ws.send(json.dumps([3, uid, payload]))

    async def call(self, action: str, payload: Payload) -> list[Any]:
        """Send a CALL; returns the whole answer frame, its payload checked if a result."""
        assert self.ws is not None
        check21(f"{action}Request", payload)
        uid = f"csms-{next(self.ids)}"
        self.results[uid] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps([2, uid, action, payload]))
        frame = await asyncio.wait_for(self.results[uid], 3)
        if frame[0] == 3:
            check21(f"{action}Response", frame[2])
        return frame


@pytest.fixture
async def csms21() -> AsyncIterator[RawCsms21]:
    peer = RawCsms21()
    async with serve(peer.handle, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.1")]) as srv:
        peer.port = srv.sockets[0].getsockname()[1]
        yield peer


async def test_a_2_1_v2g_station_follows_a_discharge_setpoint(csms21: RawCsms21) -> None:
    hours = [0.0]
    cfg = station("2.1", v2g=True)
    charger = SimCharger(cfg, f"ws://127.0.0.1:{csms21.port}", clock=lambda: hours[0] * 3600)
    async with online(charger):
        await charger.plug_in(1)
        await charger.start(1, "V2GCARD")
        period = {
            "startPeriod": 0,
            "operationMode": "CentralSetpoint",
            "setpoint": -6900.0,  # 2.1 §Q: negative is discharge; 10 A on three phases
            "dischargeLimit": -11040.0,
            "limit": 11040.0,
        }
        profile = tx_default_profile("2.1", 11040.0, "W")
        assert charger.draw_a(1) == 32.0
        hours[0] = 0.5  # half an hour at 32 A
        frame = await csms21.call("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
        assert frame[2] == {"status": "Accepted"} and charger.draw_a(1) == 16.0
        profile["chargingSchedule"][0]["chargingSchedulePeriod"] = [period]
        hours[0] = 1.0  # another half hour at 16 A
        frame = await csms21.call("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
        assert frame[2] == {"status": "Accepted"} and charger.draw_a(1) == -10.0
        hours[0] = 2.0  # an hour of feeding back 10 A
        await charger.send_meter(1)
        await charger.stop(1)
    events = [p for a, p in csms21.traffic.of(cfg.id) if a == "TransactionEvent"]
    assert [e["triggerReason"] for e in events] == [
        "Authorized",
        "ChargingRateChanged",
        "ChargingRateChanged",
        "MeterValuePeriodic",
        "StopAuthorized",
    ]
    first, meter = sampled(events[0]), sampled(events[3])
    imported = (
        meter[("Energy.Active.Import.Register", None)]
        - first[("Energy.Active.Import.Register", None)]
    )
    assert imported == pytest.approx(32 * 690 * 0.5 + 16 * 690 * 0.5, abs=0.2)
    assert meter[("Energy.Active.Export.Register", None)] == pytest.approx(6900, abs=0.2)
    assert meter[("Power.Active.Import", None)] == -6900.0
    net_wh = 32 * 690 * 0.5 + 16 * 690 * 0.5 - 6900  # into a 60 kWh battery
    assert meter[("SoC", None)] == pytest.approx(first[("SoC", None)] + net_wh / 600, abs=1)


async def test_2_1_commands_are_answered_while_the_chargers_call_waits(csms21: RawCsms21) -> None:
    cfg = station("2.1")
    async with online(SimCharger(cfg, f"ws://127.0.0.1:{csms21.port}")) as charger:
        traffic = csms21.traffic
        frame = await csms21.call(
            "ReserveNow",
            {
                "id": 1,
                "expiryDateTime": now_text(600),
                "idToken": {"idToken": "X", "type": "ISO14443"},
            },
        )
        assert frame[0] == 4 and frame[2] == "NotImplemented"
        csms21.hold.add("Authorize")
        starting = asyncio.create_task(charger.start(1, "CARD6"))
        await traffic.until(lambda: bool(traffic.of(cfg.id, "Authorize")))
        beat = asyncio.create_task(charger.heartbeat())
        # OCPP-J 2.0.1 §4.1.1: the station answers the CSMS while its own CALL is pending...
        variable = {
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
        }
        frame = await csms21.call("GetVariables", {"getVariableData": [variable]})
        assert frame[2]["getVariableResult"][0]["attributeValue"] == "300"
        # ...but does not send a second CALL of its own before the first is answered.
        assert not traffic.of(cfg.id, "Heartbeat")
        await csms21.answer(csms21.held.pop("Authorize"), "Authorize")
        assert await starting is not None
        await beat
        actions = [a for a, _ in traffic.of(cfg.id)]
        after = actions[actions.index("Authorize") + 1 :]
        assert after[:2] == ["Heartbeat", "TransactionEvent"], "queued CALLs go out in order"


async def test_a_pending_station_is_accepted_by_a_triggered_boot(csms21: RawCsms21) -> None:
    # OCPP 2.0.1 B02: while Pending the station waits `interval` (300 s here) before booting
    # again, answers the CSMS meanwhile, and a triggered BootNotification can accept it.
    csms21.boot_answers = ["Pending", "Accepted"]
    charger = SimCharger(station("2.1"), f"ws://127.0.0.1:{csms21.port}")
    runner = asyncio.create_task(charger.run())
    try:
        traffic = csms21.traffic
        await traffic.until(lambda: bool(traffic.of(charger.cfg.id, "BootNotification")))
        assert not charger.connected
        trigger = {"requestedMessage": "BootNotification"}
        assert (await csms21.call("TriggerMessage", trigger))[2] == {"status": "Accepted"}
        await charger.wait_connected(timeout=2)
        boots = [p["reason"] for _, p in traffic.of(charger.cfg.id, "BootNotification")]
        assert boots == ["PowerUp", "Triggered"] and charger.boot_status == "Accepted"
    finally:
        await charger.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


# -- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "unit", "expected"),
    [
        ({"startPeriod": 0, "limit": 16.0}, "A", (16.0, None)),
        ({"startPeriod": 0, "limit": 6900.0}, "W", (10.0, None)),
        ({"startPeriod": 0, "limit": 6900.0, "numberPhases": 1}, "W", (30.0, None)),
        ({"startPeriod": 0, "limit": -10.0}, "A", (0.0, -10.0)),
        ({"startPeriod": 0, "limit": 16.0, "operationMode": "Idle"}, "A", (0.0, None)),
        ({"startPeriod": 0, "setpoint": -2300.0, "numberPhases": 1}, "W", (None, -10.0)),
    ],
)
def test_schedule_periods_in_amps_per_phase(
    period: Payload, unit: str, expected: tuple[float | None, float | None]
) -> None:
    got = parse_period(period, unit, phases=3)
    assert (got.limit_a, got.setpoint_a) == expected


def absolute(periods: list[tuple[int, float]], started_s_ago: float, **extra: Any) -> Profile:
    raw = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": extra.pop("kind", "Absolute"),
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": now_text(-started_s_ago),
            "chargingSchedulePeriod": [{"startPeriod": s, "limit": a} for s, a in periods],
            **extra.pop("schedule", {}),
        },
        **extra,
    }
    return parse_profile(raw, 0, 3)


@pytest.mark.parametrize(
    ("profile", "limit"),
    [
        (absolute([(0, 16.0), (1800, 8.0)], 600), 16.0),
        (absolute([(0, 16.0), (1800, 8.0)], 3600), 8.0),
        # starts in an hour (the profiles are built at collection, well before the test runs)
        (absolute([(0, 16.0)], -3600), None),
        (absolute([(0, 16.0)], 3600, schedule={"duration": 600}), None),  # over
        (absolute([(0, 16.0)], 60, validFrom=now_text(3600)), None),  # not yet valid
        (
            absolute(
                [(0, 16.0), (3600, 6.0)], 86400 + 4000, kind="Recurring", recurrencyKind="Daily"
            ),
            6.0,
        ),
    ],
)
def test_the_period_in_force(profile: Profile, limit: float | None) -> None:
    period = profile.period_at(datetime.now(UTC), None)
    assert (period.limit_a if period else None) == limit


def test_profiles_stack_and_the_station_maximum_caps() -> None:
    charger = SimCharger(SimStation(id="P1", version="1.6", connectors=2), "ws://127.0.0.1:9")

    def profile(pid: int, purpose: str, stack: int, amps: float, connector: int = 0) -> Profile:
        raw = {
            "chargingProfileId": pid,
            "stackLevel": stack,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
            },
        }
        return parse_profile(raw, connector, 3)

    charger.profiles = [
        profile(1, "TxDefaultProfile", 0, 16.0),
        profile(2, "TxDefaultProfile", 1, 6.0),
        profile(3, "TxDefaultProfile", 0, 20.0, connector=2),  # replaces connector 0's
    ]
    assert charger.limit_a == {1: 6.0, 2: 20.0}
    c = charger.connectors[1]
    c.transaction, c.plugged = "5", True
    charger.profiles.append(profile(4, "TxProfile", 0, 12.0, connector=1))
    assert charger.draw_a(1) == 12.0, "a TxProfile overrules the TxDefaultProfile"
    charger.profiles.append(profile(5, "ChargePointMaxProfile", 0, 10.0))
    assert charger.limit_a == {1: 10.0, 2: 10.0}
    assert charger.draw_a(2) == 0.0, "no session, no draw"


def test_fleet_station_names_versions_and_the_v2g_one() -> None:
    got = fleet_stations(4, ("1.6", "2.0.1", "2.1"), v2g=True, prefix="SIM")
    assert [(s.id, s.version, s.v2g) for s in got] == [
        ("SIM01", "1.6", False),
        ("SIM02", "2.0.1", False),
        ("SIM03", "2.1", False),
        ("SIM04", "1.6", True),
    ]


async def test_a_scripted_fleet_runs_sessions(csms: LibraryCsms) -> None:
    stop = asyncio.Event()
    fleet = asyncio.create_task(
        run_fleet(csms.url, stations=2, versions=("1.6", "2.0.1"), session_every_s=0.2, stop=stop)
    )
    traffic = csms.traffic
    try:
        await traffic.until(
            lambda: (
                bool(traffic.of("SIM01", "StopTransaction"))
                and any(
                    p["eventType"] == "Ended" for _, p in traffic.of("SIM02", "TransactionEvent")
                )
            ),
            timeout=4,
        )
    finally:
        stop.set()
        await asyncio.wait_for(fleet, 3)
    tags = {p["idTag"] for _, p in traffic.of("SIM01", "StartTransaction")}
    assert all(t.startswith("TAG") for t in tags)
    assert traffic.errors == []


# -- against edge's own daemon ------------------------------------------------------------


async def post(site: RunningSite, station: str, command: str, body: dict[str, Any]) -> Any:
    url = f"{site.api}/api/v1/stations/{station}/{command}"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def sessions(site: RunningSite) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/api/v1/sessions") as resp:
        return await resp.json()  # type: ignore[no-any-return]


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


@pytest.mark.parametrize(("station", "version"), [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_a_firmware_update_and_an_upload_can_be_followed(
    start_site: StartSite, tmp_path: Path, station: str, version: str
) -> None:
    site = await start_site()
    charger = SimCharger(SimStation(id=station, version=version, meter_interval_s=3600), site.url)
    async with online(charger):
        assert (await post(site, station, "firmware", {"url": "http://f/x"}))["accepted"]
        assert (await post(site, station, "diagnostics", {"url": "ftp://d/"}))["accepted"]
        state = site.daemon.registry.stations[station]
        await until(
            lambda: (state.progress.get("firmware_status") or {}).get("status") == "Installed"
        )
        await until(lambda: (state.progress.get("upload_status") or {}).get("status") == "Uploaded")
        code, out = await edge_cli("stations", "--api", site.api)
        assert code == 0 and "(update: Installed " in out and "(upload: Uploaded " in out, out
    await site.daemon.stop()
    # What the last reports said is still shown after a restart.
    again = await start_site(text=site_config(tmp_path))
    _, shown = await api(again, f"/api/v1/stations/{station}")
    assert shown["firmware_status"]["status"] == "Installed"
    assert shown["upload_status"]["status"] == "Uploaded"


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
