"""`edge meters` and `edge profiles`: the site meters and the hardware profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edge.cli import (
    EXIT_FAIL,
    ApiOpt,
    ConfigOpt,
    JsonOpt,
    app,
    call,
    client,
    fail,
    kwh,
    profiles_app,
    show_json,
    table,
)


def _triple(values: list[float | None], fmt: str) -> str:
    shown = [format(v, fmt) for v in values if v is not None]
    return "/".join(shown)


@app.command("meters")
def meters(
    config: Path | None = ConfigOpt, api: str | None = ApiOpt, as_json: bool = JsonOpt
) -> None:
    """Site meters: latest reading, its age and whether it can be trusted."""
    data = call(client(config, api).get, "/api/v1/meters")
    if as_json:
        show_json(data)
        return
    if not data:
        typer.echo("no meters configured ([[meters]] in the config)")
        return
    rows = [
        [
            m["id"],
            m["role"],
            m["profile"],
            m["status"],
            None if m["age_s"] is None else f"{m['age_s']:.1f}",
            _triple(m["voltage_v"], ".1f"),
            _triple(m["current_a"], ".2f"),
            _triple(m.get("power_phases_w") or [], ".0f"),
            None if m["power_w"] is None else f"{m['power_w']:.0f}",
            kwh(m["import_wh"]),
            kwh(m["export_wh"]),
            m["last_error"] if m["status"] != "ok" else None,
        ]
        for m in data
    ]
    columns = ["id", "role", "profile", "status", "age s", "V", "A", "W/phase", "W"]
    table("Meters", [*columns, "import kWh", "export kWh", "last error"], rows)


@profiles_app.command("list")
def profiles_list(as_json: bool = JsonOpt) -> None:
    """Meter profiles shipped with edge and the products each covers."""
    from edge.modbus.profile import ProfileError, load_profile, shipped

    found: list[dict[str, Any]] = []
    for stem, path in shipped().items():
        try:
            p = load_profile(str(path))
        except ProfileError as exc:
            found.append({"profile": stem, "error": str(exc)})
            continue
        kind = "SunSpec discovery" if p.discovers else f"{len(p.quantities)} quantities"
        found.append({"profile": stem, "name": p.name, "products": list(p.products), "map": kind})
    if as_json:
        show_json(found)
        return
    if not found:
        typer.echo("no meter profiles installed")
        return
    rows = [
        [f["profile"], f.get("name"), ", ".join(f.get("products", [])), f.get("map") or f["error"]]
        for f in found
    ]
    table("Meter profiles (hardware/meters)", ["profile", "name", "products", "map"], rows)


@profiles_app.command("check")
def profiles_check(path: Path = typer.Argument(..., help="A meter profile TOML file.")) -> None:
    """Validate a meter profile file; lists every problem with its key (exit 1)."""
    from edge.modbus.plan import plan_reads, spans
    from edge.modbus.profile import ProfileError, load_profile

    try:
        p = load_profile(str(path))
    except ProfileError as exc:
        fail(str(exc), EXIT_FAIL)
    typer.echo(f"{path}: ok: {p.name} ({', '.join(p.products)})")
    if p.discovers:
        models = sorted({m for b in p.sunspec for m in b.models})
        typer.echo(f"  SunSpec discovery at {list(p.base_addresses)}, models {models}")
        return
    reads = plan_reads(spans(p.quantities), p.max_registers, p.max_gap)
    typer.echo(f"  {len(p.quantities)} quantities in {len(reads)} read(s):")
    for r in reads:
        typer.echo(f"    function {r.function}, registers {r.address}..{r.end - 1} ({r.count})")
