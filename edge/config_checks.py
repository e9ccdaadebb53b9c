"""The config's rules across keys, run on the raw TOML tables (so that they report
even where a model failed), with each key's default where it is absent."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from edge.config import (
    PASSWORD_RULE,
    ApiConfig,
    LoadConfig,
    MeterConfig,
    OcppConfig,
    Section,
    UplinkConfig,
    host_port,
)
from edge.config_errors import Problem


def cross_checks(data: dict[str, Any]) -> list[Problem]:
    """Rules that span keys, with each key's default when it is absent."""
    return [
        *_duplicates(_tables(data, "stations"), "stations", "id"),
        *_duplicates(_tables(data, "meters"), "meters", "id"),
        *_duplicates(_tables(_table(data, "auth"), "tags"), "auth.tags", "id_tag"),
        *_security_checks(data),
        *_api_checks(_table(data, "api")),
        *_meter_checks(_tables(data, "meters")),
        *_load_checks(_table(data, "load")),
        *_duplicates(_tables(data, "circuits"), "circuits", "id"),
        *_circuit_checks(data),
        *_charger_profile_checks(_tables(data, "stations")),
        *_uplink_checks(_table(data, "uplink")),
    ]


def _table(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _tables(data: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _get(table: dict[str, Any], model: type[Section], name: str) -> Any:
    """The raw value of a key, or the model's default when the key is absent."""
    return table.get(name, model.model_fields[name].default)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _duplicates(items: list[tuple[int, dict[str, Any]]], key: str, name: str) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, item in items:
        value = item.get(name)
        if isinstance(value, str) and value in first:
            yield f"{key}[{i}].{name}", f"duplicate {value!r}, already at {key}[{first[value]}]"
        elif isinstance(value, str):
            first[value] = i


def _security_checks(data: dict[str, Any]) -> Iterator[Problem]:
    """What each profile needs (OCPP 1.6 Security Whitepaper; OCPP 2.0.1 Part 2 A00)."""
    ocpp = _table(data, "ocpp")
    profile = _get(ocpp, OcppConfig, "security_profile")
    if type(profile) is not int:
        return  # reported by the model
    basic = f"required with ocpp.security_profile = {profile} (HTTP Basic auth, user = station id)"
    for i, station in _tables(data, "stations"):
        if profile in (1, 2) and "password" not in station:
            yield f"stations[{i}].password", f"{basic}: {PASSWORD_RULE}"
    needs = {"tls_cert": "the server certificate chain (PEM)", "tls_key": "its private key (PEM)"}
    if profile == 3:
        needs["tls_ca"] = "the CA certificate (PEM) that signed the chargers' client certificates"
    for key, what in needs.items():
        if profile >= 2 and not ocpp.get(key):
            yield f"ocpp.{key}", f"required with ocpp.security_profile = {profile}: {what}"


def _api_checks(api: dict[str, Any]) -> Iterator[Problem]:
    listen = _get(api, ApiConfig, "listen")
    parsed = host_port(listen) if isinstance(listen, str) else None
    if parsed is not None and not _is_loopback(parsed[0]) and not api.get("token"):
        yield "api.token", f"required when api.listen is not on loopback (got {listen!r})"


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def _meter_checks(meters: list[tuple[int, dict[str, Any]]]) -> Iterator[Problem]:
    buses: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    for i, meter in meters:
        transport = _get(meter, MeterConfig, "transport")
        if transport in ("tcp", "rtu-over-tcp") and not meter.get("host"):
            yield f"meters[{i}].host", f"required for transport {transport!r}, e.g. 192.0.2.10"
        if transport == "rtu" and not meter.get("device"):
            yield f"meters[{i}].device", "required for transport 'rtu', e.g. /dev/ttyUSB0"
        if isinstance(meter.get("profile"), str):
            yield from _profile_check(i, meter["profile"])
        bus = _bus_key(meter, transport)
        unit = _get(meter, MeterConfig, "unit")
        if bus is None:
            continue
        if (*bus, unit) in buses:
            j = buses[(*bus, unit)][0]
            yield f"meters[{i}].unit", f"unit {unit} on this bus is already meters[{j}]"
        else:
            buses[(*bus, unit)] = (i, meter)
        yield from _line_settings(i, meter, bus, buses)


def _bus_key(meter: dict[str, Any], transport: Any) -> tuple[Any, ...] | None:
    if transport == "rtu":
        return ("rtu", meter["device"]) if meter.get("device") else None
    if meter.get("host"):
        return (transport, meter["host"], _get(meter, MeterConfig, "port"))
    return None


def _line_settings(
    i: int,
    meter: dict[str, Any],
    bus: tuple[Any, ...],
    seen: dict[tuple[Any, ...], tuple[int, dict[str, Any]]],
) -> Iterator[Problem]:
    """Meters on one RS-485 line must agree on its settings: one client serves them all."""
    if bus[0] != "rtu":
        return
    for key, (j, other) in seen.items():
        if key[: len(bus)] != bus or j >= i:
            continue
        for name in ("baudrate", "parity", "stopbits"):
            mine, theirs = _get(meter, MeterConfig, name), _get(other, MeterConfig, name)
            if mine != theirs:
                yield (
                    f"meters[{i}].{name}",
                    f"{mine!r} differs from meters[{j}] ({theirs!r}) on the same line {bus[1]}",
                )
        return


def _profile_check(i: int, name: str) -> Iterator[Problem]:
    # Imported here: the profile loader is only needed when meters are configured.
    from edge.modbus.profile import ProfileError, load_profile

    try:
        load_profile(name)
    except ProfileError as exc:
        key, msg = exc.problems[0]
        if key == "profile":
            yield f"meters[{i}].profile", msg
        else:
            more = f" and {len(exc.problems) - 1} more" if len(exc.problems) > 1 else ""
            yield (
                f"meters[{i}].profile",
                f"{exc.source}: {key}: {msg}{more}; run `edge profiles check {exc.source}`",
            )


def _load_checks(load: dict[str, Any]) -> Iterator[Problem]:
    limit = _float(load.get("grid_limit_a"))
    if limit is None or limit <= 0:
        return  # no load management, or reported by the model
    margin = _float(_get(load, LoadConfig, "margin_a"))
    if margin is not None and margin >= limit:
        yield "load.margin_a", f"must be below load.grid_limit_a = {limit:g} (got {margin:g})"
    failsafe = _float(_get(load, LoadConfig, "failsafe_current_a"))
    if failsafe is not None and failsafe > limit:
        yield (
            "load.failsafe_current_a",
            f"must not exceed load.grid_limit_a = {limit:g} (got {failsafe:g})",
        )


def _uplink_checks(uplink: dict[str, Any]) -> Iterator[Problem]:
    mode = _get(uplink, UplinkConfig, "mode")
    if mode == "ocpp" and not _table(uplink, "ocpp").get("url"):
        yield "uplink.ocpp.url", "required when uplink.mode = 'ocpp' (ws:// or wss:// URL)"
    if mode == "mqtt" and not _table(uplink, "mqtt").get("host"):
        yield "uplink.mqtt.host", "required when uplink.mode = 'mqtt' (the broker's host name)"


def _circuit_checks(data: dict[str, Any]) -> Iterator[Problem]:
    """Parents exist and form a tree; stations and meters exist; a station on one circuit."""
    circuits = _tables(data, "circuits")
    ids = {c.get("id") for _, c in circuits}
    stations = {s.get("id") for _, s in _tables(data, "stations")}
    meters = {m.get("id") for _, m in _tables(data, "meters")}
    parents = {c.get("id"): c.get("parent") for _, c in circuits}
    placed: dict[str, int] = {}
    for i, circuit in circuits:
        parent = circuit.get("parent")
        if parent is not None and parent not in ids:
            yield f"circuits[{i}].parent", f"no circuit {parent!r}; known: {sorted(map(str, ids))}"
        elif parent is not None and _cycles(circuit.get("id"), parents):
            yield f"circuits[{i}].parent", f"{parent!r} leads back to {circuit.get('id')!r}"
        meter = circuit.get("meter")
        if meter is not None and meter not in meters:
            yield f"circuits[{i}].meter", f"no [[meters]] entry with id {meter!r}"
        names = circuit.get("stations", [])
        for j, station in enumerate(names if isinstance(names, list) else []):
            key = f"circuits[{i}].stations[{j}]"
            if station not in stations:
                yield key, f"no [[stations]] entry with id {station!r}"
            elif station in placed:
                yield key, f"{station!r} is already on circuits[{placed[station]}]"
            else:
                placed[station] = i


def _cycles(start: Any, parents: dict[Any, Any]) -> bool:
    seen, node = set(), parents.get(start)
    while node is not None and node not in seen:
        if node == start:
            return True
        seen.add(node)
        node = parents.get(node)
    return False


def _charger_profile_checks(stations: list[tuple[int, dict[str, Any]]]) -> Iterator[Problem]:
    # Imported here: charger profiles are only read when a station names one.
    from edge.ocpp.charger_profile import ChargerProfileError, load

    for i, station in stations:
        name = station.get("profile")
        if not isinstance(name, str):
            continue
        try:
            load(name)
        except ChargerProfileError as exc:
            key, msg = exc.problems[0]
            yield (
                f"stations[{i}].profile",
                msg if key == "profile" else f"{exc.source}: {key}: {msg}",
            )
