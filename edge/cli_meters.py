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
    """Meter and charger profiles shipped with edge: what each covers."""
    from edge.modbus.profile import ProfileError, load_profile, shipped

    found: list[dict[str, Any]] = []
    for stem, path in shipped().items():
        try:
            p = load_profile(str(path))
        except ProfileError as exc:
            found.append({"kind": "meter", "profile": stem, "error": str(exc)})
            continue
        kind = "SunSpec discovery" if p.discovers else f"{len(p.quantities)} quantities"
        found.append(
            {
                "kind": "meter",
                "profile": stem,
                "name": p.name,
                "products": list(p.products),
                "map": kind,
            }
        )
    chargers = _charger_profiles()
    if as_json:
        show_json([*found, *chargers])
        return
    rows = [
        [f["profile"], f.get("name"), ", ".join(f.get("products", [])), f.get("map") or f["error"]]
        for f in found
    ]
    table("Meter profiles (hardware/meters)", ["profile", "name", "products", "map"], rows)
    rows = [
        [c["profile"], c.get("name"), c.get("matches"), c.get("quirks") or c.get("error")]
        for c in chargers
    ]
    table("Charger profiles (hardware/chargers)", ["profile", "name", "matches", "quirks"], rows)


def _charger_profiles() -> list[dict[str, Any]]:
    from edge.ocpp.charger_profile import ChargerProfileError, load, shipped

    found: list[dict[str, Any]] = []
    for stem in shipped():
        try:
            p = load(stem)
        except ChargerProfileError as exc:
            found.append({"kind": "charger", "profile": stem, "error": str(exc)})
            continue
        found.append(
            {
                "kind": "charger",
                "profile": stem,
                "name": p.title,
                "matches": f"{p.vendor} {p.model}*".strip() if p.vendor else "by name",
                "quirks": _quirks(p),
            }
        )
    return found


def _quirks(p: Any) -> str:
    c = p.charging
    said = [f"{c.rate_unit}, {c.profile_kind}, stack level {c.stack_level}"]
    if c.on_reject:
        said.append(f"on reject: {', '.join(c.on_reject)}")
    if not p.websocket_ping:
        said.append("no websocket pings")
    return "; ".join(said)


@profiles_app.command("check")
def profiles_check(
    path: Path = typer.Argument(..., help="A meter or charger profile TOML file."),
) -> None:
    """Validate a meter or charger profile file; lists every problem with its key (exit 1)."""
    from edge.modbus.plan import plan_reads, spans
    from edge.modbus.profile import ProfileError, load_profile

    if _is_charger_profile(path):
        _check_charger_profile(path)
        return
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


def _is_charger_profile(path: Path) -> bool:
    """A file with a [charger] table is a charger profile (hardware/chargers)."""
    import tomllib

    try:
        return "charger" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # the meter check names what is wrong with it


def _check_charger_profile(path: Path) -> None:
    from edge.ocpp.charger_profile import ChargerProfileError, load

    try:
        p = load(str(path))
    except ChargerProfileError as exc:
        fail(str(exc), EXIT_FAIL)
    matches = f"BootNotification {p.vendor!r} {p.model!r}*" if p.vendor else "by name only"
    typer.echo(f"{path}: ok: charger profile {p.title} (matches {matches})")
    typer.echo(f"  {_quirks(p)}")
