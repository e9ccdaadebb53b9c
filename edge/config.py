"""The TOML configuration: pydantic models of DESIGN.md §4.2, checked in one pass.

Every problem is reported at once as (key, message), the key in TOML notation
(`stations[2].max_current_a`). `edge/data/edge.example.toml` explains each key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zoneinfo
from collections.abc import Iterator
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from edge.config_file import DEFAULT_PATH as DEFAULT_PATH
from edge.config_file import resolve_path as resolve_path
from edge.errors import ConfigError

Problem = tuple[str, str]


# -- single-value rules --------------------------------------------------------------------


def _station_id(value: str) -> str:
    # OCPP-J 2.0.1 §3.1.1: at most 48 characters and no ':', because the identity is
    # also the HTTP Basic user name (OCPP 1.6 Security Whitepaper A00.FR.204).
    if not 1 <= len(value) <= 48:
        raise ValueError(f"must be 1 to 48 characters (got {len(value)})")
    if ":" in value:
        raise ValueError(f"must not contain ':', it is the HTTP Basic user name (got {value!r})")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"must be printable ASCII (got {value!r})")
    return value


# The Basic auth password is the station's AuthorizationKey: 16 to 40 characters
# (OCPP 1.6 Security Whitepaper A00.FR.205/.304; 2.0.1 BasicAuthPassword, errata
# 2023-12 §2.17.3: minimum 16, maximum 40).
_PASSWORD_RULE = "16 to 40 characters (OCPP Security Whitepaper AuthorizationKey)"


def _password(value: str) -> str:
    if not 16 <= len(value) <= 40:
        raise ValueError(f"must be {_PASSWORD_RULE} (got {len(value)} characters)")
    return value


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"file not found: {value}")
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an IANA time zone such as Europe/Berlin or UTC (got {value!r})"
        ) from None
    return value


def _topic_level(value: str) -> str:
    if not value or any(c in value for c in "/+#"):
        raise ValueError(
            f"must be non-empty without '/', '+' or '#', it is an MQTT topic level (got {value!r})"
        )
    return value


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must start with '/' (got {value!r})")
    return value


def _websocket_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError(f"must start with ws:// or wss:// (got {value!r})")
    return value


def _host_port(listen: str) -> tuple[str, int] | None:
    # "host:port", "[::1]:8080" for IPv6; None when the text is not of that form.
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def _listen(value: str) -> str:
    if _host_port(value) is None:
        raise ValueError(f"must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got {value!r})")
    return value


def _aware_time(value: Any) -> Any:
    # A time without offset is ambiguous (site or UTC?), so it is refused, not guessed.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be an RFC 3339 time such as 2027-12-31T23:59:59Z (got {value!r})"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(f"needs a time and UTC offset, e.g. {value.isoformat()}T23:59:59Z")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"needs a UTC offset, e.g. {value.isoformat()}Z")
    return value


StationId = Annotated[str, AfterValidator(_station_id)]
Password = Annotated[str, AfterValidator(_password)]
FilePath = Annotated[str, AfterValidator(_existing_file)]
Port = Annotated[int, Field(ge=1, le=65535)]
OcppVersion = Literal["2.1", "2.0.1", "1.6"]


# -- the models ----------------------------------------------------------------------------


class Section(BaseModel):
    """A TOML table: unknown keys are errors; TOML already types values, so no coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SiteConfig(Section):
    id: Annotated[str, AfterValidator(_topic_level)] = "site"
    name: str = ""
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"


class OcppConfig(Section):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 9000  # 0 picks a free port (tests)
    path: Annotated[str, AfterValidator(_url_path)] = "/ocpp"
    versions: list[OcppVersion] = Field(default=["2.1", "2.0.1", "1.6"], min_length=1)
    heartbeat_interval: Annotated[int, Field(ge=10, le=86400)] = 300
    security_profile: Annotated[int, Field(ge=0, le=3)] = 0
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None
    tls_ca: FilePath | None = None
    allow_unknown_stations: bool = False
    unknown_station_boot: Literal["pending", "rejected", "accepted"] = "pending"
    call_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    ping_interval_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    max_frame_bytes: Annotated[int, Field(ge=4096, le=16 * 1024 * 1024)] = 65536
    compression: bool = True
    # Profile 3: the client certificate's O must contain it (OCPP 2.0.1 Part 2 A00.FR.404).
    cpo_name: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class StationConfig(Section):
    id: StationId
    password: Password | None = None
    max_current_a: Annotated[float, Field(gt=0, le=1000)] = 32.0
    phases: Literal[1, 3] = 3
    bidirectional: bool = False
    priority: int = 0
    phase_rotation: Literal["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3"] = "L1L2L3"
    profile: str | None = None
    uplink_password: Password | None = None  # this station's password towards the cloud
    # Profile 3: the CN of its client certificate (the charger's serial number, A00.FR.405);
    # none: the CN must be the station id.
    serial: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class ApiConfig(Section):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8080"
    token: str | None = None


class StoreConfig(Section):
    path: str = "/var/lib/edge/edge.sqlite"
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    outbox_max_rows: Annotated[int, Field(ge=1000)] = 200_000


class MeterConfig(Section):
    id: str
    role: Literal["grid", "pv", "building", "battery", "ev"]
    profile: str
    transport: Literal["tcp", "rtu", "rtu-over-tcp"] = "tcp"
    host: str | None = None
    port: Port = 502
    device: str | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=1, le=247)] = 1  # Modbus unit ids 248..255 are reserved
    # None: 1 s for the grid meter (the load balancer's input), 5 s for the others
    poll_interval_s: Annotated[float, Field(ge=0.1, le=3600)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 1.0
    journal_interval_s: Annotated[float, Field(ge=1, le=86400)] = 10.0

    @property
    def interval_s(self) -> float:
        """The poll interval, with the role's default."""
        if self.poll_interval_s is not None:
            return self.poll_interval_s
        return 1.0 if self.role == "grid" else 5.0


class LoadConfig(Section):
    grid_limit_a: float | None = Field(default=None, gt=0)  # None: no load management
    margin_a: Annotated[float, Field(ge=0)] = 2.0
    min_current_a: Annotated[float, Field(ge=0)] = 6.0
    failsafe_current_a: Annotated[float, Field(ge=0)] = 6.0
    stale_after_s: Annotated[float, Field(gt=0)] = 10.0
    strategy: Literal["fair", "priority"] = "fair"
    period_s: Annotated[float, Field(ge=0.1, le=60)] = 1.0  # control cycle
    hysteresis_a: Annotated[float, Field(ge=0, le=32)] = 1.0  # smaller increases wait
    dwell_s: Annotated[float, Field(ge=0, le=3600)] = 30.0  # increases wait after a change
    rotation_s: Annotated[float, Field(ge=60, le=86400)] = 900.0  # paused sessions' turn
    # a charger falls back to the fail-safe current this long after edge last wrote its
    # limit (edge rewrites it at two thirds of this); 0 turns the fall-back period off
    fallback_after_s: Annotated[float, Field(ge=0, le=86400)] = 300.0


class CircuitConfig(Section):
    id: Annotated[str, Field(min_length=1, max_length=48)]
    limit_a: Annotated[float, Field(gt=0, le=10000)]
    parent: str | None = None  # another circuit's id; none = under the site main
    meter: str | None = None  # a `[[meters]]` id measuring this circuit (chargers included)
    stations: list[str] = []


class V2gConfig(Section):
    enabled: bool = False
    min_soc_percent: Annotated[float, Field(ge=0, le=100)] = 30.0
    export_limit_a: float | None = Field(default=None, ge=0)
    tariff: str | None = None
    compensation: float | None = Field(default=None, ge=0)


class AuthTagConfig(Section):
    id_tag: Annotated[str, Field(min_length=1, max_length=36)]  # IdToken is string[36]
    status: Literal["Accepted", "Blocked", "Expired", "Invalid"] = "Accepted"
    expiry: Annotated[datetime | None, BeforeValidator(_aware_time)] = None
    parent_id_tag: str | None = Field(default=None, min_length=1, max_length=36)


class AuthConfig(Section):
    unknown_tags: Literal["accept", "reject"] = "reject"
    cache_ttl_s: Annotated[int, Field(ge=0)] = 86400
    tags: list[AuthTagConfig] = []


class UplinkOcppConfig(Section):
    url: Annotated[str, AfterValidator(_websocket_url)] | None = None
    password: str | None = None
    # the cloud refusing a session's idTag (StartTransaction.conf / TransactionEvent
    # idTokenInfo) stops it, as a charger's StopTransactionOnInvalidId would
    stop_on_invalid_id: bool = True
    tls_ca: FilePath | None = None
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None


class UplinkMqttConfig(Section):
    host: str | None = None
    port: Port = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    prefix: str = "edge"
    qos: Literal[0, 1] = 1
    homeassistant: bool = False  # publish Home Assistant MQTT discovery for stations, meters
    discovery_prefix: str = "homeassistant"


class UplinkConfig(Section):
    mode: Literal["none", "ocpp", "mqtt"] = "none"
    ocpp: UplinkOcppConfig = UplinkOcppConfig()
    mqtt: UplinkMqttConfig = UplinkMqttConfig()


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(Section):
    site: SiteConfig = SiteConfig()
    ocpp: OcppConfig = OcppConfig()
    stations: list[StationConfig] = []
    api: ApiConfig = ApiConfig()
    store: StoreConfig = StoreConfig()
    meters: list[MeterConfig] = []
    load: LoadConfig = LoadConfig()
    circuits: list[CircuitConfig] = []
    v2g: V2gConfig = V2gConfig()
    auth: AuthConfig = AuthConfig()
    uplink: UplinkConfig = UplinkConfig()
    log: LogConfig = LogConfig()

    def station(self, station_id: str) -> StationConfig | None:
        """The `[[stations]]` entry of an id, if configured."""
        return next((s for s in self.stations if s.id == station_id), None)


# -- loading -------------------------------------------------------------------------------


def load_config(path: Path | None = None) -> Config:
    """Load and check the config; no file at all means the built-in defaults."""
    resolved = resolve_path(path)
    if resolved is None:
        return Config()
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("(file)", f"file not found: {resolved}")], str(resolved)) from None
    except OSError as exc:
        problem = ("(file)", f"cannot read {resolved}: {exc.strerror}")
        raise ConfigError([problem], str(resolved)) from None
    except UnicodeDecodeError as exc:
        problem = ("(file)", f"not UTF-8 text (byte {exc.start})")
        raise ConfigError([problem], str(resolved)) from None
    return parse_config(text, str(resolved))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse TOML text; raises ConfigError listing every problem with its key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError([("(syntax)", f"TOML syntax: {exc}")], source) from None
    try:
        config: Config | None = Config.model_validate(data)
        problems: list[Problem] = []
    except ValidationError as exc:
        config = None
        problems = [_problem(err) for err in exc.errors()]
    # Rules across keys run on the raw tables, so they report even when a model failed.
    problems.extend(_cross_checks(data))
    if problems or config is None:
        raise ConfigError(sorted(problems, key=_file_order), source)
    return config


def example_config_text() -> str:
    """The annotated example config shipped with the package."""
    return resources.files("edge.data").joinpath("edge.example.toml").read_text("utf-8")


# -- pydantic errors as (key, message) -----------------------------------------------------


def _problem(err: Any) -> Problem:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    path, owner, field = _locate(loc)
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(owner.model_fields) if owner else ""
        return _key([*path, loc[-1]]), f"unknown key {loc[-1]!r}; allowed: {allowed}"
    return _key(path), _message(err, field)


def _locate(
    loc: tuple[str | int, ...],
) -> tuple[list[str | int], type[BaseModel] | None, FieldInfo | None]:
    """The TOML path of an error location, the model at its end, and the last field."""
    owner: type[BaseModel] | None = Config
    field: FieldInfo | None = None
    path: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            path.append(part)
        elif owner is not None and part in owner.model_fields:
            field = owner.model_fields[part]
            path.append(part)
            owner = _model_in(field.annotation)
        # Any other part names a union member ("float", "function-after[...]"), not a key.
    return path, owner, field


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


def _literal_in(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return next((c for a in get_args(annotation) if (c := _literal_in(a))), ())


def _key(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string (in quotes)",
    "list_type": "must be an array",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "datetime_type": "must be a date and time such as 2027-12-31T23:59:59Z",
}


def _message(err: Any, field: FieldInfo | None) -> str:
    kind, got = err["type"], err.get("input")
    choices = _literal_in(field.annotation) if field else ()
    if kind == "missing":
        return "required" + (f"; one of: {_listing(choices)}" if choices else "")
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "literal_error":
        return f"must be one of: {_listing(choices)} (got {got!r})"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = _bounds(field)
        if bounds == "must be ":  # the constraint sits inside an optional: name the one hit
            ctx = err.get("ctx", {})
            words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
            bounds += " and ".join(f"{w} {_number(ctx[k])}" for k, w in words.items() if k in ctx)
        return f"{bounds} (got {got!r})"
    if kind in ("string_too_short", "too_short"):
        shortest = err["ctx"]["min_length"]
        return (
            "must not be empty" if shortest == 1 else f"must have at least {shortest} (got {got!r})"
        )
    if kind == "string_too_long":
        return f"must be at most {err['ctx']['max_length']} characters (got {len(got)})"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]} (got {got!r})"
    text = str(err["msg"])
    return f"{text[0].lower()}{text[1:]}"


def _listing(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _bounds(field: FieldInfo | None) -> str:
    """The allowed range of a field from its ge/gt/le/lt constraints, as a sentence."""
    limits = {type(m): m for m in (field.metadata if field else ())}
    ge, gt, le, lt = (limits.get(t) for t in (Ge, Gt, Le, Lt))
    if isinstance(ge, Ge) and isinstance(le, Le):
        return f"must be between {_number(ge.ge)} and {_number(le.le)}"
    parts = [
        f"at least {_number(ge.ge)}" if isinstance(ge, Ge) else "",
        f"greater than {_number(gt.gt)}" if isinstance(gt, Gt) else "",
        f"at most {_number(le.le)}" if isinstance(le, Le) else "",
        f"less than {_number(lt.lt)}" if isinstance(lt, Lt) else "",
    ]
    return "must be " + " and ".join(p for p in parts if p)


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _file_order(problem: Problem) -> tuple[int, int]:
    """Sort key: sections in model order, then list index; stable within one entry."""
    match = re.match(r"(\w+)(?:\[(\d+)\])?", problem[0])
    sections = list(Config.model_fields)
    if match is None or match[1] not in sections:
        return -1, 0  # "(syntax)", "(file)" and unknown sections lead
    return sections.index(match[1]), int(match[2] or 0)


# -- rules across keys ---------------------------------------------------------------------


def _cross_checks(data: dict[str, Any]) -> list[Problem]:
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
            yield f"stations[{i}].password", f"{basic}: {_PASSWORD_RULE}"
    needs = {"tls_cert": "the server certificate chain (PEM)", "tls_key": "its private key (PEM)"}
    if profile == 3:
        needs["tls_ca"] = "the CA certificate (PEM) that signed the chargers' client certificates"
    for key, what in needs.items():
        if profile >= 2 and not ocpp.get(key):
            yield f"ocpp.{key}", f"required with ocpp.security_profile = {profile}: {what}"


def _api_checks(api: dict[str, Any]) -> Iterator[Problem]:
    listen = _get(api, ApiConfig, "listen")
    parsed = _host_port(listen) if isinstance(listen, str) else None
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
