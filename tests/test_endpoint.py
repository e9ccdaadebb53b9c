"""The charger endpoint under bad input and faults: each case answered, others unaffected."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import ssl
from pathlib import Path

import aiohttp
import orjson
import pytest
import structlog
from structlog.testing import capture_logs
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from edge.config import parse_config
from edge.ocpp import connection, websocket
from edge.service import daemon as daemon_module
from edge.service.daemon import Daemon
from tests.certs import make_certs
from tests.conftest import RunningSite, StartSite, site_config
from tests.peer import BOOT_2, BOOT_16, RawCharger
from tests.test_meters_daemon import edge_cli
from tests.wait import until


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def still_serves(site: RunningSite) -> None:
    """Another station can connect and boot: the daemon keeps serving everyone."""
    other = await RawCharger.connect(site.url, "CP201", "2.0.1")
    reply = await other.call("BootNotification", BOOT_2)
    assert reply[0] == 3 and reply[2]["status"] == "Accepted"
    await other.close()


async def refused_status(url: str, **kw: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=["ocpp1.6"], **kw):  # type: ignore[arg-type]
            pass
    return info.value.response.status_code


async def test_unknown_and_malformed_station_ids_are_refused(site: RunningSite) -> None:
    assert await refused_status(f"{site.url}/NOBODY") == 404
    assert await refused_status(f"{site.url}/CP%3A16") == 400  # ':' after decoding
    assert await refused_status(f"{site.url}/{'X' * 49}") == 400
    assert await refused_status(f"{site.url}/CP16/extra") == 404
    await still_serves(site)


async def test_refused_chargers_are_shown_to_whoever_commissions_the_site(
    start_site: StartSite, tmp_path: Path
) -> None:
    # The usual commissioning mistakes: an id typed in the wrong case, a wrong password.
    text = site_config(tmp_path, ocpp="security_profile = 1")
    for sid in ("CP16", "CP201", "CP21"):
        text = text.replace(f'id = "{sid}"', f'id = "{sid}"\npassword = "{sid}-long-secret-1"')
    site = await start_site(text=text)
    assert await refused_status(f"{site.url}/cp16", additional_headers=basic("cp16", "x")) == 404
    # A charger with a wrong password tries again and again: one entry, counted, and
    # one log line (a minute), not one per try.
    with capture_logs() as logs:
        for _ in range(5):
            wrong = basic("CP201", "x")
            assert await refused_status(f"{site.url}/CP201", additional_headers=wrong) == 401
    logged = [e for e in logs if e["event"] == "ocpp.handshake.refused"]
    assert len(logged) == 1 and logged[0]["station"] == "CP201", logged
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/api/v1/status") as resp:
        refused = (await resp.json())["stations"]["refused"]
    assert [(r["station"], r["status"], r["reason"], r["meant"]) for r in refused] == [
        ("CP201", 401, "auth: wrong credentials", None),
        ("cp16", 404, "unknown station", "CP16"),
    ]
    assert [r["count"] for r in refused] == [5, 1]
    assert refused[1]["remote"] == "127.0.0.1"
    code, out = await edge_cli("status", "--api", site.api)
    assert code == 0
    assert "refused   'cp16' from 127.0.0.1 at " in out
    assert ": unknown station (did you mean 'CP16'?)" in out
    assert "'CP201' from 127.0.0.1 at " in out and " (5 times since " in out, out
    _, out = await edge_cli("doctor", "--config", str(site.config_path), "--api", site.api)
    assert "station CP16: not connected" in out and "refused 'cp16' from 127.0.0.1" in out
    assert "station CP201: not connected" in out and "auth: wrong credentials" in out
    assert "station CP21: not connected; point it at" in out and "CP21; refused" not in out


async def _pings_received(url: str, station: str, seconds: float) -> tuple[int, bool]:
    """Open a websocket by hand, answer nothing for `seconds` (a charger that never
    answers pings): the server's ping frames (opcode 9), and whether it closed."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ocpp/{station} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    pings, closed = 0, False
    try:
        async with asyncio.timeout(seconds):
            while not closed:
                head = await reader.readexactly(2)
                await reader.readexactly(head[1] & 0x7F)  # server frames: short, unmasked
                pings += (head[0] & 0x0F) == 0x9
                closed = (head[0] & 0x0F) == 0x8
    except TimeoutError:
        pass
    except asyncio.IncompleteReadError:
        closed = True
    writer.close()
    return pings, closed


async def test_a_charger_profile_can_turn_websocket_pings_off(
    start_site: StartSite, tmp_path: Path
) -> None:
    # RFC 6455 §5.5.2 has every endpoint answer pings; some chargers never do.
    quiet = tmp_path / "no-ping.toml"
    quiet.write_text('[charger]\nname = "No pong"\n[connection]\nwebsocket_ping = false\n')
    text = site_config(tmp_path).replace("ping_interval_s = 0", "ping_interval_s = 0.2")
    text = text.replace('id = "CP16"', f'id = "CP16"\nprofile = "{quiet}"')
    site = await start_site(text=text)
    # Pinged, and closed when it does not answer, with a log line that says what to do ...
    with capture_logs() as logs:
        assert await _pings_received(site.url, "CP201", 1.0) == (1, True)
        await until(lambda: any(e["event"] == "ocpp.disconnected" for e in logs))
    [gone] = [e for e in logs if e["event"] == "ocpp.disconnected"]
    assert "keepalive ping timeout" in gone["reason"] and "websocket_ping = false" in gone["hint"]
    # ... unless its charger profile says it never does: then it stays connected.
    with capture_logs() as logs:
        assert await _pings_received(site.url, "CP16", 1.0) == (0, False)
    assert any(e["event"] == "ocpp.keepalive.off" and e["station"] == "CP16" for e in logs)


async def test_percent_encoded_ids_are_decoded(start_site: StartSite) -> None:
    site = await start_site('\n[[stations]]\nid = "CP 7"\n')
    charger = await RawCharger.connect(site.url, "CP%207")
    reply = await charger.call("BootNotification", BOOT_16)
    assert reply[2]["status"] == "Accepted"
    await charger.close()


async def test_the_newest_common_version_is_chosen(site: RunningSite) -> None:
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6", "ocpp2.0.1"]) as ws:
        assert ws.subprotocol == "ocpp2.0.1"


async def test_compression_is_negotiated_without_context_takeover(site: RunningSite) -> None:
    # OCPP-J 2.0.1 §3.2: the CSMS supports RFC 7692; with no context takeover an idle
    # connection keeps no zlib state.
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:
        (deflate,) = ws.protocol.extensions
        assert deflate.name == "permessage-deflate"
        assert deflate.local_no_context_takeover and deflate.remote_no_context_takeover
        for n in range(3):  # several messages, each compressed on its own
            await ws.send(orjson.dumps([2, f"b{n}", "BootNotification", BOOT_16]).decode())
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert answer[:2] == [3, f"b{n}"] and answer[2]["status"] == "Accepted"


async def test_no_common_subprotocol_completes_the_handshake_then_closes(site: RunningSite) -> None:
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.5"]) as ws:
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1002


async def test_malformed_frames_get_the_spec_error(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    wrong_type = await charger.call(
        "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Available"}
    )
    assert wrong_type[0] == 4 and wrong_type[2] == "TypeConstraintViolation"
    missing = await charger.call("StatusNotification", {"connectorId": 1, "status": "Available"})
    assert missing[0] == 4 and missing[2] == "OccurenceConstraintViolation"  # 1.6 spelling
    bad_enum = await charger.call(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}
    )
    assert bad_enum[0] == 4 and bad_enum[2] == "PropertyConstraintViolation"
    unknown = await charger.call("FlyToTheMoon", {})
    assert unknown[0] == 4 and unknown[2] == "NotImplemented"
    not_ours = await charger.call("Reset", {"type": "Hard"})  # a CSMS-to-charger action
    assert not_ours[0] == 4 and not_ours[2] == "NotSupported"
    not_object = await charger.send_raw(b'[2, "x1", "Heartbeat", []]', expect_id="x1")
    assert not_object is not None and not_object[0] == 4
    await charger.ws.send(b"this is not json")
    heartbeat = await charger.call("Heartbeat", {})
    assert heartbeat[0] == 3, "garbage must not kill the connection"
    await charger.close()
    await still_serves(site)


async def test_v2_uses_the_2x_error_names(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP201", "2.0.1")
    await charger.call("BootNotification", BOOT_2)
    missing = await charger.call("StatusNotification", {"timestamp": "2026-11-22T10:00:00Z"})
    assert missing[2] == "OccurrenceConstraintViolation"
    await charger.close()


async def test_an_oversized_frame_closes_only_that_connection(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    big = [2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 70_000}]
    await charger.ws.send(orjson.dumps(big))
    await asyncio.wait_for(charger.ws.wait_closed(), 5)
    assert charger.ws.close_code == 1009  # RFC 6455 §7.4.1: message too big
    await still_serves(site)


async def test_messages_before_an_accepted_boot_are_refused(start_site: StartSite) -> None:
    site = await start_site(ocpp="allow_unknown_stations = true")
    charger = await RawCharger.connect(site.url, "STRANGER")
    boot = await charger.call("BootNotification", BOOT_16)
    assert boot[2]["status"] == "Pending"  # unknown_station_boot defaults to pending
    refused = await charger.call("Heartbeat", {})
    assert refused[0] == 4 and refused[2] == "SecurityError"
    await charger.close()


async def test_a_newer_connection_replaces_the_older(site: RunningSite) -> None:
    first = await RawCharger.connect(site.url, "CP16")
    await first.call("BootNotification", BOOT_16)
    second = await RawCharger.connect(site.url, "CP16")
    await asyncio.wait_for(first.ws.wait_closed(), 5)
    assert first.ws.close_code == 1000
    reply = await second.call("Heartbeat", {})
    assert reply[0] == 3
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{site.api}/api/v1/stations/CP16") as resp,
    ):
        assert (await resp.json())["connected"] is True
    await second.close()


async def test_inbound_calls_are_answered_while_our_call_waits(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    async with aiohttp.ClientSession() as http:
        command = asyncio.create_task(
            http.post(f"{site.api}/api/v1/stations/CP16/reset", json={"hard": False})
        )
        ours = await charger.next_call()
        assert ours[2] == "Reset"
        # The charger CALLs us before answering our CALL: it must not wait behind it.
        heartbeat = await charger.call("Heartbeat", {})
        assert heartbeat[0] == 3
        await charger.answer(ours, {"status": "Accepted"})
        resp = await command
        assert resp.status == 200 and (await resp.json())["accepted"] is True
    await charger.close()


async def test_a_charger_that_never_answers_times_out(start_site: StartSite) -> None:
    site = await start_site(call_timeout=0.5)
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{site.api}/api/v1/stations/CP16/clear_cache", json={}) as resp,
    ):
        assert resp.status == 504
        assert "no answer to ClearCache" in (await resp.json())["message"]
    await charger.close()


async def test_a_charger_that_leaves_mid_call_reports_not_connected(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    async with aiohttp.ClientSession() as http:
        command = asyncio.create_task(
            http.post(f"{site.api}/api/v1/stations/CP16/clear_cache", json={})
        )
        await charger.next_call()
        await charger.close()
        resp = await command
        assert resp.status == 409
    await still_serves(site)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_certs(tmp_path_factory.mktemp("certs"))


async def test_security_profile_1_checks_basic_auth(start_site: StartSite, tmp_path: Path) -> None:
    text = site_config(tmp_path, ocpp="security_profile = 1").replace(
        'id = "CP16"', 'id = "CP16"\npassword = "correct-horse-battery"'
    )
    text = text.replace('id = "CP201"', 'id = "CP201"\npassword = "another-long-secret"')
    text = text.replace('id = "CP21"', 'id = "CP21"\npassword = "yet-another-secret"')
    site = await start_site(text=text)
    url = f"{site.url}/CP16"
    assert await refused_status(url) == 401
    assert await refused_status(url, additional_headers=basic("CP16", "wrong")) == 401
    assert (
        await refused_status(url, additional_headers=basic("CP201", "another-long-secret")) == 401
    )
    async with connect(
        url, subprotocols=["ocpp1.6"], additional_headers=basic("CP16", "correct-horse-battery")
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"


async def test_security_profiles_2_and_3_use_tls(
    start_site: StartSite, tmp_path: Path, certs
) -> None:  # type: ignore[no-untyped-def]
    site = await start_site(
        ocpp=(
            f'security_profile = 3\ntls_cert = "{certs.server_cert}"\n'
            f'tls_key = "{certs.server_key}"\ntls_ca = "{certs.ca}"'
        )
    )
    url = site.url.replace("ws://", "wss://") + "/CP16"

    def client(
        cert: Path | None, key: Path | None, tls_max: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        if cert and key:
            ctx.load_cert_chain(str(cert), str(key))
        if tls_max:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = tls_max
        return ctx

    async with connect(
        url, subprotocols=["ocpp1.6"], ssl=client(certs.client_cert, certs.client_key)
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"
    assert (
        await refused_status(url, ssl=client(certs.wrong_client_cert, certs.wrong_client_key))
        == 403
    )
    # Without a client certificate the server aborts the TLS session: with TLS 1.3 the
    # client only notices when it reads the HTTP answer.
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidMessage)):
        async with connect(url, subprotocols=["ocpp1.6"], ssl=client(None, None)) as ws:
            await ws.recv()
    # A TLS 1.0 client is refused in the handshake (TLS 1.2 at least, Part 2 A00.FR.318).
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        async with connect(
            url,
            subprotocols=["ocpp1.6"],
            ssl=client(certs.client_cert, certs.client_key, ssl.TLSVersion.TLSv1),
        ):
            pass


async def test_security_profile_3_checks_the_serial_number_and_the_cpo(
    start_site: StartSite, certs
) -> None:  # type: ignore[no-untyped-def]
    # OCPP 2.0.1 Part 2 A00.FR.404/405: O contains the CPO name, CN the station's serial.
    site = await start_site(
        '\n[[stations]]\nid = "CP9"\nserial = "SN-0042"\n',
        ocpp=(
            f'security_profile = 3\ntls_cert = "{certs.server_cert}"\n'
            f'tls_key = "{certs.server_key}"\ntls_ca = "{certs.ca}"\ncpo_name = "Example CPO"'
        ),
    )
    base = site.url.replace("ws://", "wss://")

    def client(cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    ours = client(certs.serial_cert, certs.serial_key)
    async with connect(f"{base}/CP9", subprotocols=["ocpp1.6"], ssl=ours) as ws:
        assert ws.subprotocol == "ocpp1.6"
    assert await refused_status(f"{base}/CP16", ssl=ours) == 403, "CP16's CN must be CP16"
    foreign = client(certs.foreign_cert, certs.foreign_key)
    assert await refused_status(f"{base}/CP9", ssl=foreign) == 403, "another CPO's certificate"
    # a certificate without an O at all, for the right id
    no_org = client(certs.client_cert, certs.client_key)
    assert await refused_status(f"{base}/CP16", ssl=no_org) == 403


async def test_security_profile_2_is_tls_and_basic_auth(start_site: StartSite, certs) -> None:  # type: ignore[no-untyped-def]
    text = site_config(
        Path(certs.ca).parent.parent / "p2",
        ocpp=(
            f'security_profile = 2\ntls_cert = "{certs.server_cert}"\n'
            f'tls_key = "{certs.server_key}"'
        ),
    )
    for sid, pw in (
        ("CP16", "correct-horse-battery"),
        ("CP201", "another-long-secret"),
        ("CP21", "yet-another-secret"),
    ):
        text = text.replace(f'id = "{sid}"', f'id = "{sid}"\npassword = "{pw}"')
    (Path(certs.ca).parent.parent / "p2").mkdir(exist_ok=True)
    site = await start_site(text=text)
    url = site.url.replace("ws://", "wss://") + "/CP16"
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    assert await refused_status(url, ssl=ctx) == 401
    assert await refused_status(url, ssl=ctx, additional_headers=basic("CP16", "nope")) == 401
    headers = basic("CP16", "correct-horse-battery")
    async with connect(url, subprotocols=["ocpp1.6"], ssl=ctx, additional_headers=headers) as ws:
        assert ws.subprotocol == "ocpp1.6"
    with pytest.raises((ConnectionError, InvalidMessage)):  # plain ws:// to a TLS endpoint
        async with connect(
            site.url + "/CP16", subprotocols=["ocpp1.6"], additional_headers=headers
        ):
            pass


async def test_a_flood_of_connections_from_one_id_leaves_the_newest(site: RunningSite) -> None:
    chargers = [await RawCharger.connect(site.url, "CP16") for _ in range(10)]
    for old in chargers[:-1]:
        await asyncio.wait_for(old.ws.wait_closed(), 5)
        assert old.ws.close_code == 1000
    reply = await chargers[-1].call("BootNotification", BOOT_16)
    assert reply[2]["status"] == "Accepted"
    assert list(site.daemon.server.connections) == ["CP16"]  # type: ignore[union-attr]
    await chargers[-1].close()
    await still_serves(site)


async def test_metrics_count_connections_messages_errors_and_commits(site: RunningSite) -> None:
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    await charger.call("FlyToTheMoon", {})
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/metrics") as resp:
        text = await resp.text()
    assert 'edge_ocpp_connections{version="1.6"} 1.0' in text
    assert (
        'edge_ocpp_messages_total{action="BootNotification",direction="in",version="1.6"} 1.0'
        in text
    )
    assert 'edge_ocpp_errors_total{code="NotImplemented"} 1.0' in text
    # A made-up action is counted, but does not become a series of its own.
    assert 'action="unknown",direction="in",version="1.6"} 1.0' in text
    assert "FlyToTheMoon" not in text
    assert "edge_store_commit_seconds_count" in text
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/health/ready") as resp:
        assert resp.status == 200
    await charger.close()


async def test_the_collector_is_left_as_it_was_found_when_the_last_daemon_stops(
    tmp_path: Path,
) -> None:
    before = gc.get_threshold()
    assert before != daemon_module.GC_THRESHOLDS
    first = Daemon(parse_config(site_config(tmp_path / "a")))
    second = Daemon(parse_config(site_config(tmp_path / "b")))
    await first.start()
    await second.start()
    assert gc.get_threshold() == daemon_module.GC_THRESHOLDS
    await first.stop()
    assert gc.get_threshold() == daemon_module.GC_THRESHOLDS, "the second still runs"
    await second.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _call(uid: str) -> bytes:
    return orjson.dumps([2, uid, "Heartbeat", {}])


async def test_fragmented_and_whole_messages_are_answered_in_arrival_order(
    site: RunningSite,
) -> None:
    # Whole text frames take a direct path past websockets' recv() (edge/ocpp/websocket.py);
    # a fragmented message goes the long way, and must still be answered first.
    assert websocket.DIRECT, "the installed websockets lacks what the direct path needs"
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        await ws.send(_call("boot"))
        await ws.recv()
        conn = site.daemon.server.connections["CP16"]  # type: ignore[union-attr]
        assert websocket.direct_capable(conn.ws)
        for _ in range(3):
            first = _call("fragmented")
            # One write, so that both messages reach the daemon in the same read.
            ws.protocol.send_text(first[:10], fin=False)
            ws.protocol.send_continuation(first[10:], fin=True)
            ws.protocol.send_text(_call("whole"))
            ws.send_data()
            answers = [orjson.loads(await ws.recv())[1] for _ in range(2)]
            assert answers == ["fragmented", "whole"]
    await still_serves(site)


async def test_a_text_frame_that_is_not_utf8_fails_the_connection(site: RunningSite) -> None:
    async with connect(f"{site.url}/CP16", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        ws.protocol.send_text(b'[2,"x","Heartbeat",{"a":"\xff"}]')
        ws.send_data()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1007  # RFC 6455 §7.4.1: data inconsistent with its type
    await still_serves(site)


@pytest.mark.parametrize(
    ("compression", "garbage"),
    [
        # Uncompressed, one socket read (256 KiB) holds about four of these frames.
        (None, False),
        # Deflated, each is about 100 bytes: one read holds thousands, each inflating to
        # 60 KB; the parser gets a slice (edge/ocpp/websocket.py) of about ten at a time.
        ("deflate", False),
        # Every other frame a malformed CALL whose id is readable: its CALLERROR is owed
        # in turn, behind the answer to the CALL before it, and counts in the inbox.
        ("deflate", True),
    ],
)
async def test_a_charger_flooding_calls_is_read_no_faster_than_it_is_answered(
    site: RunningSite, compression: str | None, garbage: bool
) -> None:
    # A charger must wait for each answer (OCPP-J 1.6 §4.1.1). One that does not is not
    # read from while its inbox is full: the rest of its flood waits unparsed.
    total = 200 if compression is None else 600
    slack = 4 if compression is None else 1 + websocket.INPUT_SLICE // 80
    payload = {"vendorId": "test", "data": "x" * 60_000}
    async with connect(
        f"{site.url}/CP16",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=compression,  # type: ignore[arg-type]
    ) as ws:
        await ws.send(_call("boot"))
        await ws.recv()
        conn = site.daemon.server.connections["CP16"]  # type: ignore[union-attr]
        for i in range(total):  # in one write, without waiting for any answer
            call: list[object] = [2, f"f{i}", "DataTransfer", payload]
            if garbage and i % 2:
                call.append("extra")  # not a CALL: answered with FormationViolation
            ws.protocol.send_text(orjson.dumps(call))
        ws.send_data()
        answers: list[tuple[int, str]] = []

        async def read() -> None:
            while len(answers) < total:
                frame = orjson.loads(await ws.recv(decode=False))
                answers.append((frame[0], frame[1]))

        most = 0
        reading = asyncio.create_task(read())
        while not reading.done():  # look between every two steps of the daemon
            await asyncio.sleep(0)
            most = max(most, len(conn._inbox))
        await reading
        assert most <= connection.INBOX_LIMIT + slack, most
        assert answers == [(4 if garbage and i % 2 else 3, f"f{i}") for i in range(total)]
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/metrics") as resp:
        text = await resp.text()
    assert 'edge_ocpp_inbox_holds_total{version="1.6"}' in text, "never held back"
    await still_serves(site)


async def test_log_lines_of_a_station_carry_its_id(site: RunningSite) -> None:
    # Frames reach the connection from the transport's callback (the direct path); what
    # they log, there and in the handler, must still name the station.
    charger = await RawCharger.connect(site.url, "CP16")
    await charger.call("BootNotification", BOOT_16)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await charger.send_raw('[2, "bad", "Heartbeat", {"x": 1}]', expect_id="bad")
        await charger.send_raw('[2, "x"')  # not JSON: logged while parsing
        await charger.call("Heartbeat", {})
    events = {entry["event"]: entry for entry in logs}
    assert events["ocpp.call.refused"]["station"] == "CP16"
    assert events["ocpp.frame.invalid"]["station"] == "CP16"
    await charger.close()
