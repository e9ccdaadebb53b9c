"""The OCPP uplink against a cloud CSMS written with the `ocpp` library (1.6 and 2.0.1):
sessions run while the cloud is down; afterwards it sees each station boot, its
current state and every transaction message in order, 1.6 ids mapped to its own; a
cloud command reaches the charger and its answer goes back up."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from edge.sim.charger import SimCharger, SimStation
from tests.broker import free_port
from tests.conftest import RunningSite, StartSite
from tests.test_meters_daemon import edge_cli
from tests.test_sim import LibraryCsms, Peer16, online
from tests.test_uplink_mqtt import post
from tests.wait import until


@contextlib.asynccontextmanager
async def cloud_on(cloud: LibraryCsms, port: int) -> AsyncIterator[LibraryCsms]:
    protocols = [Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")]
    async with serve(cloud.handle, "127.0.0.1", port, subprotocols=protocols):
        cloud.port = port
        yield cloud


def ocpp_uplink_toml(port: int, accept_cards: bool = False) -> str:
    """`[uplink] mode = "ocpp"` towards a cloud on `port`; `accept_cards`: with an uplink
    the site is no longer open, so the test cards are accepted explicitly."""
    auth = '\n[auth]\nunknown_tags = "accept"\n' if accept_cards else ""
    return f'{auth}\n[uplink]\nmode = "ocpp"\n[uplink.ocpp]\nurl = "ws://127.0.0.1:{port}/ocpp"\n'


def relative_profile(purpose: str, unit: str, limit: float, **extra: Any) -> dict[str, Any]:
    """A 1.6 csChargingProfiles of one period from now on (OCPP 1.6 §7.7)."""
    return {
        "chargingProfileId": 7,
        "stackLevel": 1 if purpose == "TxProfile" else 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
        **extra,
    }


def cloud_ids(site: RunningSite) -> set[int]:
    """The cloud's 1.6 transaction ids that edge has mapped to its sessions."""
    with sqlite3.connect(site.db) as db:
        return {int(r[0]) for r in db.execute("SELECT cloud_tx FROM uplink_tx")}


def waiting(site: RunningSite, station: str) -> int:
    with sqlite3.connect(site.db) as db:
        row = db.execute("SELECT count(*) FROM outbox WHERE station = ?", (station,)).fetchone()
        return int(row[0])


async def test_sessions_made_while_the_cloud_was_down_arrive_in_order_with_its_ids(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(ocpp_uplink_toml(port, accept_cards=True))
    chargers = [
        SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url),
        SimCharger(SimStation(id="CP201", version="2.0.1", meter_interval_s=0), site.url),
    ]
    async with online(chargers[0]), online(chargers[1]):
        for c in chargers:
            await c.start(1, "CARD1")
            await c.send_meter(1)
            await c.stop(1)
            await c.call("FirmwareStatusNotification", {"status": "Installed"})
        assert waiting(site, "CP16") > 0 and waiting(site, "CP201") > 0

        cloud = LibraryCsms()
        async with cloud_on(cloud, port):
            await post(site, "/api/v1/uplink/retry")
            await cloud.traffic.until(
                lambda: (
                    bool(cloud.traffic.of("CP16", "FirmwareStatusNotification"))
                    and len(cloud.traffic.of("CP201", "TransactionEvent")) >= 2
                ),
                timeout=15,
            )
            v16 = [a for a, _ in cloud.traffic.of("CP16")]
            assert v16[0] == "BootNotification" and "StatusNotification" in v16
            assert v16.index("StartTransaction") < v16.index("MeterValues")
            assert v16.index("MeterValues") < v16.index("StopTransaction")
            # the charger's notifications go up too, in their place
            assert v16.index("StopTransaction") < v16.index("FirmwareStatusNotification")
            await cloud.traffic.until(
                lambda: bool(cloud.traffic.of("CP201", "FirmwareStatusNotification"))
            )
            (start,) = [p for a, p in cloud.traffic.of("CP16", "StartTransaction")]
            assert start["idTag"] == "CARD1"
            # the cloud's own id (the library peer counts from 101), not ours
            (meter,) = [p for a, p in cloud.traffic.of("CP16", "MeterValues")]
            (stop,) = [p for a, p in cloud.traffic.of("CP16", "StopTransaction")]
            assert meter["transactionId"] == 101 and stop["transactionId"] == 101
            events = [p for _, p in cloud.traffic.of("CP201", "TransactionEvent")]
            assert next(e["eventType"] for e in events) == "Started"
            assert events[-1]["eventType"] == "Ended"
            assert all(e.get("offline") is True for e in events), "made while the cloud was away"
            assert [e["seqNo"] for e in events] == sorted(e["seqNo"] for e in events)
            await until(lambda: waiting(site, "CP16") == 0 and waiting(site, "CP201") == 0)
            assert not cloud.traffic.errors

            # a cloud command reaches the charger, and its answer goes back up
            peer = cloud.peer("CP16")
            answer = await peer.call(call16.TriggerMessage(requested_message="Heartbeat"))
            assert answer.status == "Accepted"
            assert ("TriggerMessage", {"requestedMessage": "Heartbeat"}) in chargers[0].received

            # live traffic goes up as it happens, without offline
            await chargers[1].start(1, "CARD2")
            await cloud.traffic.until(
                lambda: len(cloud.traffic.of("CP201", "TransactionEvent")) > len(events)
            )
            live = cloud.traffic.of("CP201", "TransactionEvent")[-1][1]
            assert live["eventType"] == "Started" and not live.get("offline")

            # a live 1.6 session: the cloud names it by its own id, the charger by ours
            local = int(await chargers[0].start(1, "CARD3"))
            await until(lambda: cloud_ids(site) == {101, 102})
            profile = relative_profile("TxProfile", "A", 10.0, transactionId=102)
            answer = await peer.call(
                call16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
            )
            assert answer.status == "Accepted"
            sent = [p for a, p in chargers[0].received if a == "SetChargingProfile"][-1]
            assert sent["csChargingProfiles"]["transactionId"] == local != 102
            answer = await peer.call(call16.RemoteStopTransaction(transaction_id=102))
            assert answer.status == "Accepted"
            assert ("RemoteStopTransaction", {"transactionId": local}) in chargers[0].received
            # the charger's own CALLERROR goes up as it came, not as an InternalError
            with pytest.raises(OcppNotImplemented):
                await peer.call(
                    call16.ReserveNow(
                        connector_id=1,
                        expiry_date="2030-01-01T00:00:00Z",
                        id_tag="T",
                        reservation_id=1,
                    ),
                    suppress=False,
                )
            # garbage and a CALL without a payload from the cloud: answered or logged, and
            # the upstream stays up
            cloud_ws = peer._connection
            await cloud_ws.send("not json")
            await cloud_ws.send('[2, "bad-1", "Reset"]')
            answer = await peer.call(call16.TriggerMessage(requested_message="Heartbeat"))
            assert answer.status == "Accepted"
            assert len(cloud.peers["CP16"]) == 1, "the upstream did not reconnect"
        status = site.daemon.backend.uplink() if site.daemon.backend else {}
        assert status["mode"] == "ocpp" and status["delivered"] >= 6


class RefusingPeer(Peer16):
    """A cloud that refuses every MeterValues with a CALLERROR."""

    @on("MeterValues")
    def meter(self, **_: Any) -> Any:
        raise PropertyConstraintViolationError(description="meter values refused here")


class RefusingCsms(LibraryCsms):
    peer16 = RefusingPeer


async def test_what_the_cloud_refuses_is_retried_then_parked_and_can_be_sent_again(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(ocpp_uplink_toml(port, accept_cards=True))
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger):
        await charger.start(1, "CARD1")
        await charger.send_meter(1)
        await charger.stop(1)
        cloud = RefusingCsms()
        async with cloud_on(cloud, port):
            await post(site, "/api/v1/uplink/retry")
            await cloud.traffic.until(
                lambda: bool(cloud.traffic.of("CP16", "StopTransaction")), timeout=15
            )
            # tried ATTEMPTS times, then parked; the stop still went up after it
            assert len(cloud.traffic.of("CP16", "MeterValues")) == 3
            code, out = await edge_cli("uplink", "--api", site.api)
            assert "refused    1 records parked" in out, out
        accepting = LibraryCsms()
        async with cloud_on(accepting, port):
            code, out = await edge_cli("uplink", "retry", "--dead-letters", "--api", site.api)
            assert code == 0 and '"requeued": 1' in out, out
            await accepting.traffic.until(
                lambda: bool(accepting.traffic.of("CP16", "MeterValues")), timeout=15
            )
        status = await get(site, "/api/v1/uplink")
        assert status["dead_letters"] == 0


async def get(site: RunningSite, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(site.api + path) as resp:
        return await resp.json()


async def test_a_cloud_charging_profile_is_a_cap_for_load_balancing(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(
        '\n[load]\ndwell_s = 0.5\n[[circuits]]\nid = "bay"\nlimit_a = 40\nstations = ["CP16"]\n'
        + ocpp_uplink_toml(port, accept_cards=True)
    )
    cloud = LibraryCsms()
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger), cloud_on(cloud, port):
        await charger.start(1, "CARD1")
        await until(lambda: charger.limit_a[1] == 32.0)  # its max, inside 40 - 2
        await until(lambda: bool(cloud.peers.get("CP16")))
        peer = cloud.peer("CP16")
        profile = relative_profile("TxDefaultProfile", "W", 6900.0)
        answer = await peer.call(
            call16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        # 6,900 W over 3 phases at 230 V: 10 A, the lower of cloud and local
        await until(lambda: charger.limit_a[1] == 10.0)
        station = site.daemon.registry.stations["CP16"]
        await until(lambda: station.limit_reason == "cloud constraint")
        answer = await peer.call(call16.ClearChargingProfile(connector_id=1))
        assert answer.status == "Accepted"
        await until(lambda: charger.limit_a[1] == 32.0)


async def test_the_cloud_authorizes_while_connected_and_its_answer_is_cached(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    # no local list, unknown tags rejected: only the cloud can let CARD9 in
    site = await start_site(ocpp_uplink_toml(port))
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger):
        cloud = LibraryCsms()
        async with cloud_on(cloud, port):
            await until(lambda: site.daemon.uplink is not None and site.daemon.uplink.connected)
            assert await charger.start(1, "CARD9") is not None
            assert ("Authorize", {"idTag": "CARD9"}) in cloud.traffic.of("CP16", "Authorize")
            await charger.stop(1)
        await until(lambda: not site.daemon.uplink.connected)  # type: ignore[union-attr]
        # the cloud is away: its cached answer decides, an unknown tag is refused
        assert await charger.start(1, "CARD9") is not None
        await charger.stop(1)
        assert await charger.start(1, "STRANGER") is None


class BlockingPeer(Peer16):
    """A cloud that knows the tag as Blocked."""

    @on("StartTransaction")
    def start_tx(self, **_: Any) -> Any:
        return result16.StartTransaction(transaction_id=555, id_tag_info={"status": "Blocked"})


class BlockingCsms(LibraryCsms):
    peer16 = BlockingPeer


async def test_a_session_the_cloud_refuses_is_stopped(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(ocpp_uplink_toml(port, accept_cards=True))
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger):
        await charger.start(1, "CARD1")  # accepted here while the cloud is away
        async with cloud_on(BlockingCsms(), port) as cloud:
            await post(site, "/api/v1/uplink/retry")
            # StopTransactionOnInvalidId: edge stops the session the cloud refused
            await cloud.traffic.until(
                lambda: bool(cloud.traffic.of("CP16", "StopTransaction")), timeout=15
            )
            assert any(a == "RemoteStopTransaction" for a, _ in charger.received)
            (stop,) = [p for _, p in cloud.traffic.of("CP16", "StopTransaction")]
            assert stop["transactionId"] == 555


async def test_a_cloud_that_goes_away_mid_stream_gets_the_rest_in_order_after(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(ocpp_uplink_toml(port, accept_cards=True))
    charger = SimCharger(SimStation(id="CP201", version="2.0.1", meter_interval_s=0), site.url)
    async with online(charger):
        first = LibraryCsms()
        async with cloud_on(first, port):
            await until(lambda: site.daemon.uplink is not None and site.daemon.uplink.connected)
            await charger.start(1, "CARD1")
            await charger.send_meter(1)
            # 2.x: meter values of a transaction go up as TransactionEvent(Updated)
            await first.traffic.until(
                lambda: len(first.traffic.of("CP201", "TransactionEvent")) >= 2
            )
        # the cloud is gone; the session goes on and ends
        for _ in range(3):
            await charger.send_meter(1)
        await charger.stop(1)
        second = LibraryCsms()
        async with cloud_on(second, port):
            await post(site, "/api/v1/uplink/retry")
            await until(lambda: waiting(site, "CP201") == 0, timeout=15)
        seen = [p for _, p in first.traffic.of("CP201", "TransactionEvent")]
        seen += [p for _, p in second.traffic.of("CP201", "TransactionEvent")]
        seq = [p["seqNo"] for p in seen]
        # a duplicate may repeat a seqNo after the reconnect, never skip one
        assert sorted(set(seq)) == list(range(min(seq), max(seq) + 1)), seq
        assert seen[-1]["eventType"] == "Ended" and seen[-1]["offline"] is True
        assert second.traffic.of("CP201")[0][0] == "BootNotification"


async def test_the_upstream_authenticates_as_the_station(
    start_site: StartSite, tmp_path: Path
) -> None:
    port = free_port()
    site = await start_site(ocpp_uplink_toml(port) + 'password = "shared-secret-0123456"\n')
    seen: dict[str, str] = {}

    class Recording(LibraryCsms):
        async def handle(self, ws: ServerConnection) -> None:
            assert ws.request is not None
            seen[ws.request.path] = ws.request.headers.get("Authorization", "")
            await super().handle(ws)

    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger):
        async with cloud_on(Recording(), port):
            await until(lambda: "/ocpp/CP16" in seen)
        token = base64.b64encode(b"CP16:shared-secret-0123456").decode()
        assert seen["/ocpp/CP16"] == f"Basic {token}"  # HTTP Basic, user = station id


async def test_the_upstream_speaks_tls_with_a_custom_ca_and_a_client_certificate(
    start_site: StartSite, tmp_path: Path
) -> None:
    import ssl

    from tests.certs import make_certs

    certs = make_certs(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    server.verify_mode = ssl.CERT_REQUIRED  # the cloud wants the site's certificate
    server.load_verify_locations(certs.ca)
    port = free_port()
    site = await start_site(
        f'\n[uplink]\nmode = "ocpp"\n[uplink.ocpp]\nurl = "wss://127.0.0.1:{port}/ocpp"\n'
        f'tls_ca = "{certs.ca}"\ntls_cert = "{certs.client_cert}"\ntls_key = "{certs.client_key}"\n'
    )
    peers: list[str] = []

    class Checking(LibraryCsms):
        async def handle(self, ws: ServerConnection) -> None:
            cert = ws.transport.get_extra_info("peercert")
            peers.append(dict(x[0] for x in cert["subject"])["commonName"])
            await super().handle(ws)

    cloud = Checking()
    charger = SimCharger(SimStation(id="CP16", version="1.6", meter_interval_s=0), site.url)
    async with online(charger):
        protocols = [Subprotocol("ocpp1.6")]
        async with serve(cloud.handle, "127.0.0.1", port, subprotocols=protocols, ssl=server):
            await post(site, "/api/v1/uplink/retry")
            await cloud.traffic.until(lambda: bool(cloud.traffic.of("CP16")), timeout=10)
        assert peers[0] == "CP16"
        assert cloud.traffic.of("CP16")[0][0] == "BootNotification"


async def test_kill_9_under_load_then_the_cloud_gets_everything_acknowledged(
    tmp_path: Path,
) -> None:
    from tests.daemon_process import DaemonProcess, write_config
    from tests.test_durability import MeterLoad
    from tests.test_uplink_mqtt import outbox_rows

    port = free_port()
    db = tmp_path / "edge.sqlite"
    stations = ["CP1", "CP2", "CP3", "CP4"]
    extra = "".join(f'\n[[stations]]\nid = "{s}"\n' for s in stations[2:])
    ocpp, api = write_config(tmp_path / "edge.toml", db, extra + ocpp_uplink_toml(port, True))
    load = MeterLoad(stations)
    async with cloud_on(LibraryCsms(), port) as cloud:
        proc = DaemonProcess(tmp_path / "edge.toml", api)
        try:
            await asyncio.to_thread(proc.wait_ready)
            await load.kill_9_under_load(f"ws://127.0.0.1:{ocpp}/ocpp", proc)
            assert sum(len(v) for v in load.acked.values()) > 50, "too little load"
            # back on the same file: each upstream resumes from the outbox
            proc = DaemonProcess(tmp_path / "edge.toml", api)
            await asyncio.to_thread(proc.wait_ready)
            await until(lambda: outbox_rows(db) == 0, timeout=30)
        finally:
            proc.stop()
        for station in stations:
            sent = [p for _, p in cloud.traffic.of(station, "MeterValues")]
            values = [float(sv["value"]) for p in sent for sv in p["meterValue"][0]["sampledValue"]]
            missing = set(load.acked[station]) - set(values)
            assert not missing, f"{station}: acknowledged but never sent up: {sorted(missing)[:5]}"
            first_seen = list(dict.fromkeys(values))  # a resend after the crash may repeat
            assert first_seen == sorted(first_seen), f"{station}: out of order"
            # every one under the cloud's transaction id (the library peer counts from 101)
            assert all(p["transactionId"] >= 101 for p in sent), station
