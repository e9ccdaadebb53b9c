"""The `edge` command: the daemon, installer tools, and a thin client of the local API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from edge.domain.units import table_time as when
from edge.errors import ConfigError

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


def config_section(config: Path | None, name: str) -> dict[str, Any]:
    """A table of the config, read with tomllib alone: client commands must start fast
    (`edge status` within 300 ms) and the daemon has validated the file already. A file
    that does not parse goes through the full check, which reports it (exit 78)."""
    import tomllib

    from edge.config_file import resolve_path

    path = resolve_path(config)
    if path is None:
        return {}
    try:
        section = tomllib.loads(path.read_text(encoding="utf-8")).get(name, {})
    except (OSError, tomllib.TOMLDecodeError):
        load(config)  # exits 78 with every problem listed
        return {}
    return section if isinstance(section, dict) else {}


def api_section(config: Path | None) -> dict[str, Any]:
    """`[api]` of the config: where the daemon listens, and its token."""
    return config_section(config, "api")


def site_zone(config: Path | None) -> str:
    """`[site] timezone`: tables show times in it (the JSON keeps UTC)."""
    zone = config_section(config, "site").get("timezone", "UTC")
    return zone if isinstance(zone, str) else "UTC"


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


# `edge sessions --csv`: the session JSON's fields (DESIGN.md §4.6), one row each.
SESSION_CSV = (
    "id",
    "station",
    "connector",
    "id_tag",
    "transaction_id",
    "started_at",
    "stopped_at",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "status",
    "stop_reason",
    "offline",
    "synced",
)


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    import csv

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(columns)
    for row in rows:
        out.writerow(["" if row.get(c) is None else row[c] for c in columns])


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
    Console(width=_PIPED_WIDTH if _piped() else None).print(t)


# Into a pipe or a file, rich would fit a table to 80 columns and cut every cell of it
# ("2026…", "stati…") for `grep` and `less`; there it gets the room it needs instead.
_PIPED_WIDTH = 1000


def _piped() -> bool:
    return not sys.stdout.isatty() and "COLUMNS" not in os.environ


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
    refused = data["stations"].get("refused") or []
    if refused:
        from edge.ocpp.refusals import refusal_text

        for r in refused[:3]:
            typer.echo(f"refused   {refusal_text(r)}")
    typer.echo(f"sessions  {data['sessions']['active']} active")
    typer.echo(f"load      {load_line(load_)}")
    typer.echo(
        f"uplink    {up['mode']}, {'connected' if up['connected'] else 'not connected'}, "
        f"backlog {up['backlog']}"
    )
    if "store" in data:
        typer.echo(f"store     {store_line(data['store'], site_zone(config))}")
    if data.get("clock_synchronized") is False:
        typer.echo(
            "clock     NOT synchronized: session times, and the time chargers are given, may"
            " be wrong (no NTP server reached)"
        )
    return None


def _size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def store_line(store: dict[str, Any], zone: str) -> str:
    """The database's size and the disk's free space; a full disk and what it cost."""
    line = f"{_size(store['size_bytes'])}, {_size(store['free_bytes'])} free on disk"
    if store.get("reserve_bytes") and not store.get("reserve_held"):
        line += " (reserve given back)"
    dropped = sum((store.get("dropped") or {}).values())
    if store.get("disk_full"):
        line += (
            f"; DISK FULL since {when(store['disk_full_at'], zone)}: the oldest meter values"
            " are dropped to make room (sessions are kept); free some disk space"
        )
    if dropped:
        line += f"; {dropped} old meter value rows dropped for room so far"
    failing = store.get("failing")
    if failing:
        line += f"; WRITES FAILING since {when(failing['since'], zone)}: {failing['error']}"
    aside = store.get("set_aside")
    if aside and aside.get("exists", True):
        line += (
            f"; a damaged database ({aside['error']}) was set aside"
            f" {when(aside['at'], zone)} as {aside['path']}"
        )
    return line


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


def _firmware_cell(s: dict[str, Any], zone: str) -> str | None:
    """The firmware version, and an update's or upload's progress of the last day."""
    from datetime import UTC, datetime, timedelta

    from edge.domain.units import parse_time

    said = [s["firmware"] or ""]
    for key, what in (("firmware_status", "update"), ("upload_status", "upload")):
        progress = s.get(key)
        if not progress:
            continue
        if datetime.now(UTC) - parse_time(progress["at"]) < timedelta(days=1):
            at_time = (when(progress["at"], zone) or "")[11:16]
            said.append(f"({what}: {progress['status']} at {at_time})")
    return " ".join(p for p in said if p) or None


def _seen_cell(s: dict[str, Any], zone: str) -> str | None:
    from edge.state.registry import clock_text

    clock = clock_text(s.get("clock_offset_s"))
    seen = when(s["last_seen"], zone)
    return f"{seen} ({clock})" if clock else seen


def _limit_cell(s: dict[str, Any]) -> str:
    limit = s.get("limit_a")
    if limit is None:
        return "-"
    reason = s.get("limit_reason")
    error = " !" if s.get("limit_error") else ""
    if s.get("metering_error"):  # e.g. its cars' current is not reported
        error += f" (metering: {s['metering_error']})"
    return f"{limit:g} ({reason}){error}" if reason else f"{limit:g}{error}"


@app.command()
def stations(
    config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
) -> None:
    """Every known station."""
    data = call(client(config, api).get, "/api/v1/stations")
    if as_json:
        return show_json(data)
    zone = site_zone(config)
    rows = [
        [
            s["id"],
            "yes" if s["connected"] else "no",
            s["ocpp_version"],
            s["vendor"],
            s["model"],
            _firmware_cell(s, zone),
            _seen_cell(s, zone),
            " ".join(f"{c['id']}:{c['status']}" for c in s["connectors"]),
            _limit_cell(s),
        ]
        for s in data
    ]
    table(
        f"Stations (times in {zone})",
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
    id_tag: str | None = typer.Option(None, "--id-tag"),
    since: str | None = typer.Option(
        None, "--since", help="Begun at or after: 2026-11-01 or 2026-11-01T08:00 (site time)."
    ),
    until: str | None = typer.Option(None, "--until", help="Begun before (as --since)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (the JSON fields) instead."),
) -> None:
    """Charging sessions, newest first."""
    data = call(
        client(config, api).get,
        "/api/v1/sessions",
        active="true" if active else None,
        limit=limit,
        station=station,
        id_tag=id_tag,
        since=since,
        until=until,
    )
    if as_json:
        return show_json(data)
    if as_csv:
        return _csv(data, SESSION_CSV)
    zone = site_zone(config)
    rows = [
        [
            s["id"],
            s["station"],
            s["connector"],
            s["id_tag"],
            when(s["started_at"], zone),
            when(s["stopped_at"], zone),
            kwh(s["energy_wh"]),
            s["status"],
            s["stop_reason"],
            "yes" if s["offline"] else "",
        ]
        for s in data
    ]
    table(
        f"Sessions (times in {zone})",
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
    total = sum(s["energy_wh"] or 0.0 for s in data)
    more = " (the --limit; there may be more)" if len(data) == limit else ""
    typer.echo(f"{len(data)} session(s){more}, {kwh(total)} kWh")
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


@app.command()
def backup(
    dest: Path = typer.Argument(..., help="The new file to write the copy to."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A consistent, checked copy of the database ([store] path), edge running or not."""
    from edge.store.backup import BackupFailed
    from edge.store.backup import backup as take

    cfg = load(config)
    try:
        done = take(Path(cfg.store.path), dest)
    except BackupFailed as exc:
        fail(str(exc), EXIT_FAIL)
    if as_json:
        show_json(done)
        return
    typer.echo(
        f"wrote {done['dest']}: {_size(done['size_bytes'])}, {done['sessions']} sessions"
        f" ({done['active_sessions']} active), schema {done['schema']}, checked"
    )


# Each of these modules registers its commands on the groups above.
from edge import cli_auth, cli_meters, cli_station  # noqa: E402, F401


def main() -> int:
    """Console script entry point; returns the exit code."""
    try:
        app()  # standalone: usage errors print and exit 2, typer.Exit carries our codes
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
