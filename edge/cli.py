"""The `edge` command: the daemon, installer tools, and a thin client of the local API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from edge.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_NOT_CONNECTED, EXIT_REJECTED, EXIT_TIMEOUT, EXIT_UNKNOWN_STATION = 3, 4, 5, 6
EXIT_UNREACHABLE, EXIT_CONFIG = 69, 78
API_ERROR_EXITS = {
    "not_connected": EXIT_NOT_CONNECTED,
    "timeout": EXIT_TIMEOUT,
    "unknown_station": EXIT_UNKNOWN_STATION,
    "bad_request": EXIT_USAGE,
}

EPILOG = (
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 station not connected, 4 charger rejected the "
    "command, 5 charger timeout, 6 unknown station, 69 daemon unreachable, 78 bad config."
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    epilog=EPILOG,
    help="edge: the site controller of an EV charging site.",
)
station_app = typer.Typer(no_args_is_help=True, help="Commands to one charger.", epilog=EPILOG)
config_app = typer.Typer(no_args_is_help=True, help="Read or change a charger's configuration.")
auth_app = typer.Typer(no_args_is_help=True, help="The local authorization list.")
profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles.")
app.add_typer(station_app, name="station")
station_app.add_typer(config_app, name="config")
app.add_typer(auth_app, name="auth")
app.add_typer(profiles_app, name="profiles")

ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    help="Config file (else $EDGE_CONFIG, else /etc/edge/edge.toml).",
    show_default=False,
)
ApiOpt = typer.Option(None, "--api", help="API URL of the daemon (default: from the config).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr and the exit code."""
    typer.echo(f"edge: {message}", err=True)
    raise typer.Exit(code)


def load(config: Path | None) -> Any:
    from edge.config import load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def api_section(config: Path | None) -> dict[str, Any]:
    """`[api]` of the config, read with tomllib alone: client commands must start fast
    (`edge status` within 300 ms) and the daemon has validated the file already. A file
    that does not parse goes through the full check, which reports it (exit 78)."""
    import tomllib

    from edge.config_file import resolve_path

    path = resolve_path(config)
    if path is None:
        return {}
    try:
        section = tomllib.loads(path.read_text(encoding="utf-8")).get("api", {})
    except (OSError, tomllib.TOMLDecodeError):
        load(config)  # exits 78 with every problem listed
        return {}
    return section if isinstance(section, dict) else {}


def client(config: Path | None, api: str | None) -> Any:
    from edge.api.client import ApiClient

    section = api_section(config)
    listen = str(section.get("listen", "127.0.0.1:8080")).replace("0.0.0.0", "127.0.0.1")
    token = section.get("token")
    return ApiClient(api or f"http://{listen}", token=token if isinstance(token, str) else None)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an API call; map its failures to one line and an exit code."""
    from edge.api.client import ApiError, DaemonUnreachable

    try:
        return fn(*args, **kwargs)
    except DaemonUnreachable as exc:
        fail(f"{exc}; is `edge run` running?", EXIT_UNREACHABLE)
    except ApiError as exc:
        fail(exc.message, API_ERROR_EXITS.get(exc.code, EXIT_FAIL))


def show_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def when(iso: str | None) -> str | None:
    """An API time, shortened for a table: 2026-11-22 10:00:05."""
    return iso[:19].replace("T", " ") if iso else None


def kwh(wh: float | None) -> str | None:
    return f"{wh / 1000:.2f}" if wh is not None else None


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    Console().print(t)


# -- daemon and installer commands -------------------------------------------------------


@app.command()
def run(config: Path | None = ConfigOpt) -> None:
    """Run the daemon in the foreground (systemd Type=notify)."""
    cfg = load(config)
    from edge.service.daemon import run_daemon

    raise typer.Exit(run_daemon(cfg))


@app.command()
def demo(
    config: Path | None = ConfigOpt,
    stations: int = typer.Option(3, "--stations", min=1, max=50, help="Simulated chargers."),
    port: int | None = typer.Option(None, "--port", help="Charger endpoint port."),
) -> None:
    """The daemon plus a simulated site on loopback."""
    cfg = load(config)
    from edge.service.demo import run_demo

    raise typer.Exit(run_demo(cfg, stations=stations, port=port))


@app.command()
def init(
    path: Path = typer.Argument(Path("edge.toml"), help="Where to write the example config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the annotated example config."""
    from edge.config import example_config_text

    if path.exists() and not force:
        fail(f"{path} exists; use --force to overwrite", EXIT_FAIL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example_config_text(), encoding="utf-8")
    typer.echo(f"wrote {path}; edit it, then: edge check-config {path}")


@app.command("check-config")
def check_config(
    path: Path | None = typer.Argument(None, help="Config file to check."),
    config: Path | None = ConfigOpt,
) -> None:
    """Validate a config; list every error with its key (exit 78)."""
    from edge.config import load_config, resolve_path

    target = resolve_path(path or config)
    if target is None:
        typer.echo("ok: no config file; the built-in defaults apply")
        return
    try:
        load_config(target)
    except ConfigError as exc:
        typer.echo(f"{target}: {len(exc.problems)} error(s)", err=True)
        for key, message in exc.problems:
            typer.echo(f"  {key}: {message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    typer.echo(f"ok: {target}")


# -- reading the daemon -------------------------------------------------------------------


@app.command()
def status(
    config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
) -> None:
    """Summary of the site."""
    data = call(client(config, api).get, "/api/v1/status")
    if as_json:
        return show_json(data)
    load_ = data["load"]
    up = data["uplink"]
    typer.echo(f"site      {data['site']}  (edge {data['version']}, up {data['uptime_s']:.0f} s)")
    typer.echo(f"stations  {data['stations']['connected']}/{data['stations']['known']} connected")
    typer.echo(f"sessions  {data['sessions']['active']} active")
    typer.echo(f"load      {load_line(load_)}")
    typer.echo(
        f"uplink    {up['mode']}, {'connected' if up['connected'] else 'not connected'}, "
        f"backlog {up['backlog']}"
    )
    return None


def _phases(values: Any) -> str:
    if not values or all(v is None for v in values):
        return "-"
    return "/".join("?" if v is None else f"{v:.1f}" for v in values) + " A"


def load_line(load_: dict[str, Any]) -> str:
    """Grid limit, measured import and EV allocation per phase, fail-safe state."""
    limit = load_.get("grid_limit_a")
    if limit is None and not load_.get("circuits"):
        return "not managed (no [load] grid_limit_a, no [[circuits]])"
    unknown = " (unknown: meter stale, frozen or missing)" if load_.get("load_unknown") else ""
    return (
        f"grid limit {limit if limit is not None else '-'} A, "
        f"import {_phases(load_.get('import_a'))}{unknown}, "
        f"EVs allocated {_phases(load_.get('ev_allocated_a'))}, "
        f"fail-safe {'ON' if load_.get('failsafe') else 'off'}"
    )


def _limit_cell(s: dict[str, Any]) -> str:
    limit = s.get("limit_a")
    if limit is None:
        return "-"
    reason = s.get("limit_reason")
    error = " !" if s.get("limit_error") else ""
    return f"{limit:g} ({reason}){error}" if reason else f"{limit:g}{error}"


@app.command()
def stations(
    config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
) -> None:
    """Every known station."""
    data = call(client(config, api).get, "/api/v1/stations")
    if as_json:
        return show_json(data)
    rows = [
        [
            s["id"],
            "yes" if s["connected"] else "no",
            s["ocpp_version"],
            s["vendor"],
            s["model"],
            s["firmware"],
            when(s["last_seen"]),
            " ".join(f"{c['id']}:{c['status']}" for c in s["connectors"]),
            _limit_cell(s),
        ]
        for s in data
    ]
    table(
        "Stations",
        [
            "id",
            "connected",
            "ocpp",
            "vendor",
            "model",
            "firmware",
            "last seen",
            "connectors",
            "limit A (why)",
        ],
        rows,
    )
    return None


@app.command()
def sessions(
    config: Path | None = ConfigOpt,
    api: str | None = ApiOpt,
    as_json: bool = JsonOpt,
    active: bool = typer.Option(False, "--active", help="Only active sessions."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000),
    station: str | None = typer.Option(None, "--station"),
) -> None:
    """Charging sessions, newest first."""
    data = call(
        client(config, api).get,
        "/api/v1/sessions",
        active="true" if active else None,
        limit=limit,
        station=station,
    )
    if as_json:
        return show_json(data)
    rows = [
        [
            s["id"],
            s["station"],
            s["connector"],
            s["id_tag"],
            when(s["started_at"]),
            when(s["stopped_at"]),
            kwh(s["energy_wh"]),
            s["status"],
            s["stop_reason"],
            "yes" if s["offline"] else "",
        ]
        for s in data
    ]
    table(
        "Sessions",
        [
            "id",
            "station",
            "conn",
            "id tag",
            "started",
            "stopped",
            "kWh",
            "status",
            "stop reason",
            "offline",
        ],
        rows,
    )
    return None


def _simple_reader(path: str, title: str) -> Any:
    def command(
        config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
    ) -> None:
        data = call(client(config, api).get, path)
        if as_json or not isinstance(data, list):
            show_json(data)
            return
        if not data:
            typer.echo(f"no {title.lower()}")
            return
        cols = list(data[0])
        table(title, cols, [[row.get(c) for c in cols] for row in data])

    command.__doc__ = f"{title} as the daemon sees them."
    return command


@app.command("uplink")
def uplink(
    action: str | None = typer.Argument(None, help="retry: reconnect now"),
    dead_letters: bool = typer.Option(
        False, "--dead-letters", help="with retry: send the records the cloud refused again"
    ),
    config: Path | None = ConfigOpt,
    api: str | None = ApiOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The cloud uplink: connected or not, backlog, delivered, last error."""
    if action not in (None, "retry"):
        fail(f"unknown action {action!r}; `edge uplink` or `edge uplink retry`", EXIT_USAGE)
    if action == "retry":
        path = "/api/v1/uplink/dead-letters/retry" if dead_letters else "/api/v1/uplink/retry"
        show_json(call(client(config, api).post, path, {}))
        return
    data = call(client(config, api).get, "/api/v1/uplink")
    if as_json:
        show_json(data)
        return
    age, thinned, broker = data.get("oldest_age_s"), data.get("thinned"), data.get("broker")
    typer.echo(f"mode       {data['mode']}{' ' + broker if broker else ''}")
    typer.echo(f"connected  {'yes' if data['connected'] else 'no'}")
    oldest = f", oldest {age:.0f} s" if age is not None else ""
    dropped = f", {thinned} thinned" if thinned else ""
    typer.echo(f"backlog    {data['backlog']} records{oldest}{dropped}")
    typer.echo(f"delivered  {data['delivered']}")
    if data.get("dead_letters"):
        typer.echo(
            f"refused    {data['dead_letters']} records parked; "
            "`edge uplink retry --dead-letters` sends them again"
        )
    typer.echo(f"last error {data.get('last_error') or '-'}")


app.command("v2g")(_simple_reader("/api/v1/v2g", "V2G"))


# -- commands to one station ---------------------------------------------------------------


def station_command(group: typer.Typer, name: str) -> Callable[[F], F]:
    """Register a station subcommand that also takes --config / --api after its name."""
    import functools
    import inspect

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(
            *args: Any, config: Path | None = None, api: str | None = None, **kwargs: Any
        ) -> Any:
            ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
            root = ctx.find_object(dict)
            if root is not None:
                root["config"] = config or root.get("config")
                root["api"] = api or root.get("api")
            return fn(*args, **kwargs)

        sig = inspect.signature(fn)
        extra = [
            inspect.Parameter(
                "config", inspect.Parameter.KEYWORD_ONLY, default=ConfigOpt, annotation=Path | None
            ),
            inspect.Parameter(
                "api", inspect.Parameter.KEYWORD_ONLY, default=ApiOpt, annotation=str | None
            ),
        ]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
        wrapper.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
        group.command(name)(wrapper)
        return fn

    return register


@station_app.callback()
def station(
    ctx: typer.Context,
    station_id: str = typer.Argument(..., metavar="ID"),
    config: Path | None = ConfigOpt,
    api: str | None = ApiOpt,
) -> None:
    """Commands to the station ID; each prints the charger's answer."""
    ctx.obj = {"station": station_id, "config": config, "api": api}


def send(ctx: typer.Context, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """POST a station command; print the answer; exit 4 when the charger refused."""
    o = ctx.find_object(dict)
    assert o is not None, "set by the station group"
    from urllib.parse import quote

    api = client(o["config"], o["api"])
    path = f"/api/v1/stations/{quote(o['station'], safe='')}/{command}"
    result: dict[str, Any] = call(api.post, path, args)
    typer.echo(f"{result['station']}: {result['action']} -> {result['status']}")
    response = result.get("response") or {}
    extra = {k: v for k, v in response.items() if k != "status"}
    if extra:
        typer.echo(json.dumps(extra, indent=2, ensure_ascii=False))
    if not result["accepted"]:
        fail(
            f"{result['station']}: {result['action']} not accepted ({result['status']})",
            EXIT_REJECTED,
        )
    return result


@station_command(station_app, "reset")
def st_reset(ctx: typer.Context, hard: bool = typer.Option(False, "--hard")) -> None:
    """Reset (soft, or --hard)."""
    send(ctx, "reset", {"hard": hard})


@station_command(station_app, "start")
def st_start(
    ctx: typer.Context,
    connector: int = typer.Option(1, "--connector"),
    id_tag: str = typer.Option(..., "--id-tag"),
) -> None:
    """Remote start a session."""
    send(ctx, "start", {"connector": connector, "id_tag": id_tag})


@station_command(station_app, "stop")
def st_stop(ctx: typer.Context, session: int | None = typer.Option(None, "--session")) -> None:
    """Remote stop the active session (or --session ID)."""
    send(ctx, "stop", {} if session is None else {"session_id": session})


@station_command(station_app, "unlock")
def st_unlock(ctx: typer.Context, connector: int = typer.Argument(1)) -> None:
    """Unlock a connector."""
    send(ctx, "unlock", {"connector": connector})


@station_command(station_app, "availability")
def st_availability(
    ctx: typer.Context,
    connector: int = typer.Argument(...),
    state: str = typer.Argument(..., help="operative | inoperative"),
) -> None:
    """Change availability of a connector (0 = station)."""
    send(ctx, "availability", {"connector": connector, "state": state})


@station_command(station_app, "trigger")
def st_trigger(
    ctx: typer.Context,
    message: str = typer.Argument(...),
    connector: int | None = typer.Option(None, "--connector"),
) -> None:
    """Ask the charger to send a message (e.g. StatusNotification)."""
    args: dict[str, Any] = {"message": message}
    if connector is not None:
        args["connector"] = connector
    send(ctx, "trigger", args)


@station_command(config_app, "get")
def cfg_get(ctx: typer.Context, key: str | None = typer.Argument(None)) -> None:
    """Read configuration keys (2.x: Component.Variable)."""
    send(ctx, "config_get", {} if key is None else {"key": key})


@station_command(config_app, "set")
def cfg_set(
    ctx: typer.Context, key: str = typer.Argument(...), value: str = typer.Argument(...)
) -> None:
    """Change a configuration key."""
    send(ctx, "config_set", {"key": key, "value": value})


@station_command(station_app, "limit")
def st_limit(
    ctx: typer.Context,
    value: float = typer.Argument(..., help="A (or W with --watts)"),
    connector: int = typer.Option(0, "--connector"),
    watts: bool = typer.Option(False, "--watts"),
) -> None:
    """Set a charging limit (TxDefaultProfile); with load balancing on, a cap it keeps."""
    key = "watts" if watts else "amps"
    send(ctx, "limit", {key: value, "connector": connector})


@station_command(station_app, "clear-limit")
def st_clear_limit(ctx: typer.Context) -> None:
    """Remove the limit set with `limit`."""
    send(ctx, "clear_limit", {})


@station_command(station_app, "firmware")
def st_firmware(
    ctx: typer.Context,
    url: str = typer.Argument(...),
    at: str | None = typer.Option(None, "--at", help="ISO 8601 retrieve time"),
) -> None:
    """Update the firmware from URL."""
    send(ctx, "firmware", {"url": url, **({"retrieve_at": at} if at else {})})


@station_command(station_app, "diagnostics")
def st_diagnostics(ctx: typer.Context, url: str = typer.Argument(...)) -> None:
    """Upload diagnostics / logs to URL."""
    send(ctx, "diagnostics", {"url": url})


@station_command(station_app, "local-list")
def st_local_list(ctx: typer.Context) -> None:
    """Send the gateway's local authorization list to the charger (SendLocalList, full)."""
    send(ctx, "send_local_list", {})


@station_command(station_app, "clear-cache")
def st_clear_cache(ctx: typer.Context) -> None:
    """Clear the charger's authorization cache."""
    send(ctx, "clear_cache", {})


@station_command(station_app, "data-transfer")
def st_data_transfer(
    ctx: typer.Context,
    vendor: str = typer.Argument(...),
    message_id: str | None = typer.Option(None, "--message-id"),
    data: str | None = typer.Option(None, "--data"),
) -> None:
    """Vendor-specific DataTransfer."""
    args: dict[str, Any] = {"vendor_id": vendor}
    if message_id:
        args["message_id"] = message_id
    if data is not None:
        args["data"] = data
    send(ctx, "data_transfer", args)


# -- local authorization list ---------------------------------------------------------------


@auth_app.command("list")
def auth_list(
    config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
) -> None:
    """The local authorization list."""
    data = call(client(config, api).get, "/api/v1/auth/tags")
    if as_json:
        return show_json(data)
    table(
        "Local authorization list",
        ["id tag", "status", "expiry", "parent", "source"],
        [[t["id_tag"], t["status"], t["expiry"], t["parent_id_tag"], t["source"]] for t in data],
    )
    return None


@auth_app.command("add")
def auth_add(
    tag: str = typer.Argument(...),
    status_: str = typer.Option("Accepted", "--status"),
    expiry: str | None = typer.Option(None, "--expiry"),
    parent: str | None = typer.Option(None, "--parent"),
    config: Path | None = ConfigOpt,
    api: str | None = ApiOpt,
) -> None:
    """Add or change a tag."""
    from urllib.parse import quote

    body = {"status": status_, "expiry": expiry, "parent_id_tag": parent}
    data = call(client(config, api).put, f"/api/v1/auth/tags/{quote(tag, safe='')}", body)
    typer.echo(f"{data['id_tag']}: {data['status']}")


@auth_app.command("remove")
def auth_remove(
    tag: str = typer.Argument(...), config: Path | None = ConfigOpt, api: str | None = ApiOpt
) -> None:
    """Remove a tag."""
    from urllib.parse import quote

    call(client(config, api).delete, f"/api/v1/auth/tags/{quote(tag, safe='')}")
    typer.echo(f"{tag}: removed")


# -- simulator, doctor, profiles ------------------------------------------------------------


@app.command()
def simulate(
    config: Path | None = ConfigOpt,
    stations_: int = typer.Option(3, "--stations", min=1, max=5000),
    ocpp: list[str] = typer.Option(["1.6", "2.0.1", "2.1"], "--ocpp"),
    v2g: bool = typer.Option(False, "--v2g"),
    url: str | None = typer.Option(None, "--url", help="Default: this config's endpoint."),
    interactive: bool = typer.Option(False, "--interactive"),
    password: str | None = typer.Option(None, "--password"),
    prefix: str = typer.Option("SIM", "--prefix"),
) -> None:
    """Simulated chargers (1.6 / 2.0.1 / 2.1) against a central system."""
    import asyncio
    import contextlib

    bad = [v for v in ocpp if v not in ("1.6", "2.0.1", "2.1")]
    if bad:
        fail(f"--ocpp: must be 1.6, 2.0.1 or 2.1 (got {', '.join(bad)})", EXIT_USAGE)
    cfg = load(config)
    target = url or f"ws://127.0.0.1:{cfg.ocpp.port}{cfg.ocpp.path}"
    from edge.sim.fleet import run_fleet

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_fleet(
                target,
                stations=stations_,
                versions=ocpp,
                v2g=v2g,
                interactive=interactive,
                password=password,
                prefix=prefix,
            )
        )


@app.command()
def doctor(config: Path | None = ConfigOpt, api: str | None = ApiOpt) -> None:
    """Commissioning checks; exit 1 if any fails."""
    from edge.service.doctor import run_checks

    cfg = load(config)
    failed = 0
    for ok, line in run_checks(cfg, client(config, api)):
        typer.echo(f"{'✓' if ok else '✗'} {line}")
        failed += not ok
    raise typer.Exit(EXIT_FAIL if failed else EXIT_OK)


# The meter and profile commands live in their own module; it registers them on `app`.
from edge import cli_meters  # noqa: E402, F401


def main() -> int:
    """Console script entry point; returns the exit code."""
    try:
        app()  # standalone: usage errors print and exit 2, typer.Exit carries our codes
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
