"""`edge auth ...`: the local authorization list."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.cli import ApiOpt, ConfigOpt, JsonOpt, auth_app, call, client, show_json, table


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
