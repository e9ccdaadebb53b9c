"""The local HTTP API (DESIGN.md §4.3): JSON read models, station commands, /metrics."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from edge.api.backend import Backend
from edge.errors import (
    BadCommand,
    CommandFailed,
    CommandTimeout,
    DeviceError,
    EdgeError,
    StationNotConnected,
    UnknownStation,
)

BACKEND = web.AppKey("backend", Backend)
TOKEN = web.AppKey("token", str)

# Error class -> (HTTP status, error code); the CLI maps the codes to exit codes.
ERRORS: tuple[tuple[type[EdgeError], int, str], ...] = (
    (UnknownStation, 404, "unknown_station"),
    (StationNotConnected, 409, "not_connected"),
    (CommandTimeout, 504, "timeout"),
    (CommandFailed, 502, "charger_error"),
    (BadCommand, 400, "bad_request"),
    (DeviceError, 502, "device_error"),
)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": code, "message": message}, status)


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn the error tree into JSON errors with their status codes."""
    try:
        return await handler(request)
    except EdgeError as exc:
        for cls, status, code in ERRORS:
            if isinstance(exc, cls):
                return error(status, code, str(exc))
        return error(500, "error", str(exc))


@web.middleware
async def auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Mutating calls need the Bearer token when one is configured."""
    token = request.app[TOKEN]
    if token and request.method not in ("GET", "HEAD", "OPTIONS"):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error(401, "unauthorized", "missing or wrong Bearer token")
    return await handler(request)


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


async def live(request: web.Request) -> web.Response:
    return json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    ok, details = _backend(request).ready()
    return json_response({"ready": ok, **details}, 200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = _backend(request).metrics_text()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


async def status(request: web.Request) -> web.Response:
    return json_response(_backend(request).status())


async def stations(request: web.Request) -> web.Response:
    return json_response(_backend(request).stations())


async def station(request: web.Request) -> web.Response:
    found = _backend(request).station(request.match_info["id"])
    if found is None:
        return error(404, "unknown_station", f"{request.match_info['id']}: unknown station")
    return json_response(found)


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadCommand(f"{name}: must be an integer from {low} to {high} (got {raw!r})")
    return int(raw)


def _query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadCommand(f"{name}: must be true or false (got {raw!r})")


async def sessions(request: web.Request) -> web.Response:
    found = await _backend(request).sessions(
        active=_query_bool(request, "active"),
        limit=_query_int(request, "limit", 100, 1, 10_000),
        station=request.query.get("station"),
        id_tag=request.query.get("id_tag"),
        since=request.query.get("since"),
        until=request.query.get("until"),
    )
    return json_response(found)


async def session(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdigit():
        return error(400, "bad_request", f"session id must be a number (got {raw!r})")
    found = await _backend(request).session(int(raw))
    if found is None:
        return error(404, "unknown_session", f"session {raw} not found")
    return json_response(found)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadCommand("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise BadCommand("body: must be a JSON object")
    return body


async def command(request: web.Request) -> web.Response:
    result = await _backend(request).station_command(
        request.match_info["id"], request.match_info["command"], await _body(request)
    )
    return json_response(result)


async def meter(request: web.Request) -> web.Response:
    meter_id = request.match_info["id"]
    found = next((m for m in _backend(request).meters() if m["id"] == meter_id), None)
    if found is None:
        return error(404, "unknown_meter", f"{meter_id}: no such meter in [[meters]]")
    return json_response(found)


async def read_meter(request: web.Request) -> web.Response:
    meter_id = request.match_info["id"]
    try:
        return json_response(await _backend(request).read_meter(meter_id))
    except KeyError:
        return error(404, "unknown_meter", f"{meter_id}: no such meter in [[meters]]")


async def tags(request: web.Request) -> web.Response:
    return json_response(await _backend(request).auth_tags())


async def put_tag(request: web.Request) -> web.Response:
    body = await _body(request)
    body["id_tag"] = request.match_info["id_tag"]
    return json_response(await _backend(request).put_auth_tag(body))


async def delete_tag(request: web.Request) -> web.Response:
    id_tag = request.match_info["id_tag"]
    if not await _backend(request).delete_auth_tag(id_tag):
        return error(404, "unknown_tag", f"{id_tag}: not in the local list")
    return json_response({"deleted": id_tag})


async def requeue(request: web.Request) -> web.Response:
    return json_response(await _backend(request).requeue_dead_letters())


async def uplink(request: web.Request) -> web.Response:
    return json_response(await _backend(request).uplink_now())


def _reader(method: Callable[[Backend], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return json_response(method(_backend(request)))

    return handle


def create_app(backend: Backend, *, token: str | None) -> web.Application:
    """The aiohttp application of the local API."""
    app = web.Application(middlewares=[errors, auth], client_max_size=1024 * 1024)
    app[BACKEND] = backend
    app[TOKEN] = token or ""
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/stations", stations)
    app.router.add_get("/api/v1/stations/{id}", station)
    app.router.add_post("/api/v1/stations/{id}/{command}", command)
    app.router.add_get("/api/v1/sessions", sessions)
    app.router.add_get("/api/v1/sessions/{id}", session)
    app.router.add_get("/api/v1/meters", _reader(lambda b: b.meters()))
    app.router.add_get("/api/v1/meters/{id}", meter)
    app.router.add_post("/api/v1/meters/{id}/read", read_meter)
    app.router.add_get("/api/v1/uplink", uplink)
    app.router.add_post("/api/v1/uplink/retry", _reader(lambda b: b.uplink_retry()))
    app.router.add_post("/api/v1/uplink/dead-letters/retry", requeue)
    app.router.add_get("/api/v1/v2g", _reader(lambda b: b.v2g()))
    app.router.add_get("/api/v1/auth/tags", tags)
    app.router.add_put("/api/v1/auth/tags/{id_tag}", put_tag)
    app.router.add_delete("/api/v1/auth/tags/{id_tag}", delete_tag)
    return app


async def start_api(app: web.Application, listen: str) -> web.AppRunner:
    """Serve the app on "host:port" (port 0 picks a free one)."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port))
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the API listens on."""
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("API not listening")
