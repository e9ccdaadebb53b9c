"""The charger endpoint: `ws[s]://<host>:<port><path>/<station-id>`.

Handshake rules (OCPP-J 1.6 §3, OCPP 2.0.1 Part 4 §3, Security Whitepaper / Part 2 A00):
- the station id is the last path segment, percent-decoded; unknown ids get HTTP 404
  unless unknown stations are allowed;
- security profile 1 (HTTP Basic, user = station id), 2 (TLS + Basic), 3 (TLS with
  a client certificate whose CN is the station id); TLS 1.2 at least;
- the newest OCPP version both sides speak wins; with none in common the handshake
  completes without a subprotocol and the socket is closed at once (OCPP-J 2.0.1 §3.2);
- a newer connection of the same station replaces the older one, which is closed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import difflib
import hmac
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from edge.domain.events import StationConnected, StationDisconnected
from edge.domain.station import OcppVersion
from edge.domain.units import iso_utc
from edge.errors import StationNotConnected
from edge.metrics import Metrics
from edge.ocpp.connection import CallErrorReply, Connection, Handler
from edge.ocpp.inbound_v2 import V2Inbound
from edge.ocpp.inbound_v16 import V16Inbound
from edge.ocpp.site import Site
from edge.ocpp.websocket import DIRECT, OcppWebSocket

log = structlog.get_logger("edge.ocpp")

MAX_ID_LENGTH = 48  # OCPP 2.0.1 Part 4 §3.1.1: identity is at most 48 characters
# Refused handshakes kept for `edge status` and `edge doctor`: at commissioning, a
# charger given a wrong id, URL or password shows up here rather than not at all.
REFUSALS_KEPT = 20
# The same refusal (station, status, reason, host) is logged at most this often (s).
REFUSAL_LOG_S = 60.0
PING_HINT = (
    "it did not answer a websocket ping in time; a charger that never does needs a charger"
    " profile with [connection] websocket_ping = false"
)


@dataclass(frozen=True)
class ServerSettings:
    """Everything the endpoint needs from `[ocpp]` and `[[stations]]`."""

    host: str = "0.0.0.0"
    port: int = 9000
    path: str = "/ocpp"
    versions: Sequence[OcppVersion] = (OcppVersion.V21, OcppVersion.V201, OcppVersion.V16)
    security_profile: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    allow_unknown: bool = False
    passwords: Mapping[str, str | None] = field(default_factory=dict)
    # Profile 3: the CN each station's certificate must have (else its id), and the CPO
    # name its O must contain (none: not checked).
    certificate_cns: Mapping[str, str] = field(default_factory=dict)
    cpo_name: str | None = None
    call_timeout: float = 30.0
    ping_interval: float | None = 60.0
    max_frame_bytes: int = 65536
    compression: bool = True


def station_from_path(base: str, raw_path: str) -> str | None:
    """The percent-decoded station id of a request path, or None if the path is not ours."""
    path = urlsplit(raw_path).path
    prefix = base.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :]
    if not rest or "/" in rest:
        return None
    return unquote(rest)


def id_problem(station_id: str) -> str | None:
    """Why a station id is unacceptable, or None (2.0.1 Part 4 §3.1.1; ':' breaks Basic auth)."""
    if not station_id:
        return "empty station id"
    if len(station_id) > MAX_ID_LENGTH:
        return f"station id longer than {MAX_ID_LENGTH} characters"
    if ":" in station_id:
        return "station id contains ':'"
    if not station_id.isprintable() or not station_id.isascii():
        return "station id has non-printable or non-ASCII characters"
    return None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an HTTP Basic Authorization header (RFC 7617)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server TLS context for profiles 2 and 3; TLS 1.2 at least (Part 2 A00.FR.318)."""
    if settings.security_profile < 2:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert settings.tls_cert and settings.tls_key, "config validation requires them"
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca:
        ctx.load_verify_locations(settings.tls_ca)
    if settings.security_profile == 3:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_subject(conn: ServerConnection, attribute: str) -> str | None:
    """One attribute ("commonName", "organizationName") of the subject of the client
    certificate of a TLS connection, if any."""
    cert = conn.transport.get_extra_info("peercert") if conn.transport else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == attribute:
                return str(value)
    return None


class OcppServer:
    """Accepts chargers and keeps one `Connection` per connected station."""

    def __init__(self, settings: ServerSettings, site: Site, metrics: Metrics) -> None:
        self.settings = settings
        self.site = site
        self.metrics = metrics
        self.connections: dict[str, Connection] = {}
        self._server: Server | None = None
        # One handler table per version, shared by every connection.
        self._tables = {v: self._table(v) for v in OcppVersion}
        self._closing: set[asyncio.Future[None]] = set()
        # whether a station gets websocket keepalive pings (its charger profile says)
        self.keepalive_for: Callable[[str], bool] = lambda station: True
        # the latest refused handshakes, newest last (see REFUSALS_KEPT)
        self.refusals: collections.deque[dict[str, Any]] = collections.deque(maxlen=REFUSALS_KEPT)
        # per (station, status, reason, host): when last logged, refusals not logged since
        self._refusals_logged: dict[tuple[str, int, str, str], tuple[float, int]] = {}

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and listen."""
        s = self.settings
        extensions = (
            # Memory first (a site controller holds hundreds of idle connections): no
            # context takeover either way (RFC 7692 §7.1.1) means zlib state exists only
            # while a message is being (de)compressed, so an idle connection holds none,
            # where it held ~16 KB with takeover; small windows and memLevel keep the
            # per-message state small (§7.1.2). Each frame then compresses on its own.
            [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=9,
                    client_max_window_bits=9,
                    compress_settings={"memLevel": 1},
                )
            ]
            if s.compression
            else None
        )
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            ssl=tls_context(s),
            subprotocols=[Subprotocol(v.subprotocol) for v in s.versions],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            compression=None,
            extensions=extensions,
            max_size=s.max_frame_bytes,
            ping_interval=s.ping_interval or None,
            ping_timeout=s.ping_interval or None,
            max_queue=8,
            # Whole text messages bypass recv()/send() (edge/ocpp/websocket.py).
            create_connection=OcppWebSocket if DIRECT else None,
        )
        log.info("ocpp.listening", host=s.host, port=self.port, path=s.path)

    async def stop(self) -> None:
        """Close every charger connection and stop listening."""
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL to a connected station and return its answer."""
        conn = self.connections.get(station_id)
        if conn is None:
            raise StationNotConnected(station_id)
        return await conn.call(action, payload, timeout)

    def version_of(self, station_id: str) -> OcppVersion | None:
        """The negotiated OCPP version of a connected station."""
        conn = self.connections.get(station_id)
        return conn.version if conn else None

    def _refuse(
        self,
        conn: ServerConnection,
        status: HTTPStatus,
        reason: str,
        station: str,
        meant: str | None = None,
    ) -> Response:
        self.metrics.rejected_handshakes.labels(reason.split(":")[0]).inc()
        remote = _remote(conn)
        host = remote.rsplit(":", 1)[0]
        at = iso_utc(datetime.now(UTC))
        key = (station, int(status), reason, host)
        # A charger set up wrongly tries again and again, every few seconds for some: it
        # is one entry, counted, so that it does not push every other one out of the list,
        # and one log line a minute, so that it does not fill the disk.
        same = next((r for r in self.refusals if _refusal_key(r) == key), None)
        if same is not None:
            self.refusals.remove(same)
            same.update(count=same["count"] + 1, at=at)
            self.refusals.append(same)
        else:
            self.refusals.append(
                {
                    "station": station,
                    "status": int(status),
                    "reason": reason,
                    "meant": meant,
                    "remote": host,
                    "at": at,
                    "count": 1,
                    "first_at": at,
                }
            )
        now = time.monotonic()
        logged, unlogged = self._refusals_logged.get(key, (-REFUSAL_LOG_S, 0))
        if now - logged < REFUSAL_LOG_S:
            self._refusals_logged[key] = (logged, unlogged + 1)
        else:
            if len(self._refusals_logged) > 4 * REFUSALS_KEPT:
                self._refusals_logged.clear()
            self._refusals_logged[key] = (now, 0)
            log.warning(
                "ocpp.handshake.refused",
                station=station,
                status=int(status),
                reason=reason,
                remote=remote,
                **({"meant": meant} if meant else {}),
                **({"repeated": unlogged} if unlogged else {}),
            )
        return conn.respond(status, f"{reason}\n")

    def _meant(self, station: str) -> str | None:
        """The configured station an unknown id was probably meant to be (ids are
        case-sensitive; a typo is the usual commissioning mistake)."""
        known = list(self.settings.passwords)
        same = [k for k in known if k.lower() == station.lower()]
        close = same or difflib.get_close_matches(station, known, n=1, cutoff=0.75)
        return close[0] if close else None

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        s = self.settings
        station = station_from_path(s.path, request.path)
        if station is None:
            return self._refuse(conn, HTTPStatus.NOT_FOUND, "path: not a charger endpoint", "")
        problem = id_problem(station)
        if problem:
            return self._refuse(conn, HTTPStatus.BAD_REQUEST, f"station id: {problem}", station)
        known = station in s.passwords
        if not known and not s.allow_unknown:
            meant = self._meant(station)
            return self._refuse(conn, HTTPStatus.NOT_FOUND, "unknown station", station, meant)
        refused = None
        if s.security_profile in (1, 2):
            refused = self._check_basic(conn, request, station)
        elif s.security_profile == 3:
            refused = self._check_certificate(conn, station)
        if refused is None and not self.keepalive_for(station):
            # Its charger profile says it never answers pings: no keepalive (websockets
            # starts it after the handshake, if the connection still has an interval).
            conn.ping_interval = None
        return refused

    def _check_certificate(self, conn: ServerConnection, station: str) -> Response | None:
        """Profile 3 (OCPP 2.0.1 Part 2 A00.FR.404/405): the chain was verified in the TLS
        handshake; the CN must be the station's serial number (or its id if none is
        configured), and the O must contain the CPO name if one is configured."""
        s = self.settings
        expected = s.certificate_cns.get(station, station)
        cn = peer_subject(conn, "commonName")
        if cn != expected:
            reason = f"certificate: CN {cn!r} is not {expected!r}"
            return self._refuse(conn, HTTPStatus.FORBIDDEN, reason, station)
        if s.cpo_name is not None:
            org = peer_subject(conn, "organizationName")
            if org is None or s.cpo_name not in org:
                reason = f"certificate: O {org!r} does not name the CPO {s.cpo_name!r}"
                return self._refuse(conn, HTTPStatus.FORBIDDEN, reason, station)
        return None

    def _check_basic(
        self, conn: ServerConnection, request: Request, station: str
    ) -> Response | None:
        creds = basic_credentials(request.headers.get("Authorization"))
        expected = self.settings.passwords.get(station)
        if creds is None:
            response = self._refuse(
                conn, HTTPStatus.UNAUTHORIZED, "auth: no Basic credentials", station
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="edge"'
            return response
        user, password = creds
        if (
            user != station
            or expected is None
            or not hmac.compare_digest(password.encode(), expected.encode())
        ):
            response = self._refuse(
                conn, HTTPStatus.UNAUTHORIZED, "auth: wrong credentials", station
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="edge"'
            return response
        return None

    def _select_subprotocol(
        self, conn: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for version in self.settings.versions:
            if version.subprotocol in offered:
                return Subprotocol(version.subprotocol)
        return None

    def _table(self, version: OcppVersion) -> dict[str, Handler]:
        table = (
            V16Inbound(self.site).table()
            if version is OcppVersion.V16
            else V2Inbound(self.site, version).table()
        )
        return {action: self._gated(action, h) for action, h in table.items()}

    def _gated(self, action: str, handler: Handler) -> Handler:
        if action == "BootNotification":
            return handler

        async def gated(station: str, payload: dict[str, Any]) -> dict[str, Any]:
            # OCPP 2.0.1 B02.FR.09 / B03: until its boot is accepted a station may only
            # send BootNotification; the same holds for 1.6 stations here.
            if self.site.boot_status(station) != "Accepted":
                raise CallErrorReply("SecurityError", "BootNotification not accepted yet")
            return await handler(station, payload)

        return gated

    async def _handle(self, ws: ServerConnection) -> None:
        station = station_from_path(self.settings.path, ws.request.path if ws.request else "")
        assert station is not None, "checked in _check_request"
        structlog.contextvars.bind_contextvars(station=station)
        if ws.subprotocol is None:
            offered = ws.request.headers.get("Sec-WebSocket-Protocol") if ws.request else None
            self.metrics.rejected_handshakes.labels("subprotocol").inc()
            log.warning("ocpp.subprotocol.none", offered=offered)
            await ws.close(1002, "no common OCPP subprotocol")
            return
        version = OcppVersion.from_subprotocol(ws.subprotocol)
        structlog.contextvars.bind_contextvars(ocpp=version.value)
        conn = Connection(
            ws,
            station,
            version,
            self._tables[version],
            call_timeout=self.settings.call_timeout,
            metrics=self.metrics,
        )
        old = self.connections.get(station)
        self.connections[station] = conn
        if old is not None:
            log.warning("ocpp.connection.replaced", remote=_remote(ws))
            closing = asyncio.ensure_future(old.close(1000, "replaced by a newer connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        await self.site.record(StationConnected(station, version, self.site.now(), _remote(ws)))
        log.info("ocpp.connected", remote=_remote(ws))
        self.metrics.connects.labels(version.value).inc()
        self.metrics.connections.labels(version.value).inc()
        try:
            await conn.serve()
        finally:
            self.metrics.connections.labels(version.value).dec()
            if self.connections.get(station) is conn:
                del self.connections[station]
                reason = f"{ws.close_code} {ws.close_reason}".strip() if ws.close_code else ""
                sent = ws.protocol.close_sent  # ours, if we closed it (websockets sans-I/O)
                if sent is not None and sent.reason == "keepalive ping timeout":
                    reason = f"{reason} ({sent.code} {sent.reason})".strip()
                    log.info("ocpp.disconnected", reason=reason, hint=PING_HINT)
                else:
                    log.info("ocpp.disconnected", reason=reason)
                try:
                    await self.site.record(StationDisconnected(station, self.site.now(), reason))
                except Exception as exc:  # the store failed (a full disk); the live state knows
                    log.error("ocpp.disconnect.unrecorded", error=str(exc))


def _refusal_key(r: dict[str, Any]) -> tuple[str, int, str, str]:
    return (r["station"], r["status"], r["reason"], r["remote"])


def _remote(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else ""
