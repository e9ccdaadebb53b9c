"""`edge station ID ...`: commands to one charger, each printing the charger's answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from edge.cli import (
    EXIT_REJECTED,
    ApiOpt,
    ConfigOpt,
    call,
    client,
    config_app,
    fail,
    station_app,
)

F = TypeVar("F", bound=Callable[..., Any])


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


@station_command(station_app, "schedule")
def st_schedule(
    ctx: typer.Context,
    connector: int = typer.Option(0, "--connector", help="0 = the whole station (2.x: EVSE)"),
    duration: int = typer.Option(3600, "--duration", help="seconds from now"),
) -> None:
    """The limits the charger will apply (GetCompositeSchedule)."""
    send(ctx, "composite_schedule", {"connector": connector, "duration_s": duration})


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


@station_command(station_app, "local-list-version")
def st_local_list_version(ctx: typer.Context) -> None:
    """The version of the charger's local authorization list (GetLocalListVersion)."""
    send(ctx, "local_list_version", {})


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
