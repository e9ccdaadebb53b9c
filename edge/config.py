"""The TOML configuration: pydantic models, checked in one pass that reports every error.

Keys are the contract of DESIGN.md §4.2; `edge/data/edge.example.toml` explains each.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tomllib
import zoneinfo
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.errors import ConfigError

DEFAULT_PATH = Path("/etc/edge/edge.toml")
STATION_ID_MAX = 48
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(Section):
    id: str = "site"
    name: str = ""
    timezone: str = "UTC"


class OcppConfig(Section):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 9000
    path: str = "/ocpp"
    versions: list[Literal["1.6", "2.0.1", "2.1"]] = ["2.1", "2.0.1", "1.6"]
    heartbeat_interval: Annotated[int, Field(ge=10, le=86400)] = 300
    security_profile: Literal[0, 1, 2, 3] = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    allow_unknown_stations: bool = False
    unknown_station_boot: Literal["pending", "rejected", "accepted"] = "pending"
    call_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    ping_interval_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    max_frame_bytes: Annotated[int, Field(ge=4096, le=16 * 1024 * 1024)] = 65536
    compression: bool = True


class StationConfig(Section):
    id: str
    password: str | None = None
    max_current_a: Annotated[float, Field(gt=0, le=1000)] = 32.0
    phases: Literal[1, 3] = 3
    bidirectional: bool = False
    priority: int = 0
    phase_rotation: str = "L1L2L3"
    profile: str | None = None

    @field_validator("phase_rotation")
    @classmethod
    def _rotation(cls, v: str) -> str:
        if v not in ROTATIONS:
            raise ValueError(f"must be one of: {', '.join(ROTATIONS)} (got {v!r})")
        return v


class ApiConfig(Section):
    listen: str = "127.0.0.1:8080"
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
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    device: str | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=1, le=247)] = 1
    poll_interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 1.0


class LoadConfig(Section):
    grid_limit_a: Annotated[float, Field(gt=0)] | None = None
    margin_a: Annotated[float, Field(ge=0)] = 2.0
    min_current_a: Annotated[float, Field(ge=0)] = 6.0
    failsafe_current_a: Annotated[float, Field(ge=0)] = 6.0
    stale_after_s: Annotated[float, Field(gt=0)] = 10.0
    strategy: Literal["fair", "priority"] = "fair"


class V2gConfig(Section):
    enabled: bool = False
    min_soc_percent: Annotated[float, Field(ge=0, le=100)] = 30.0
    export_limit_a: Annotated[float, Field(ge=0)] | None = None
    tariff: str | None = None
    compensation: Annotated[float, Field(ge=0)] | None = None


class AuthTagConfig(Section):
    id_tag: Annotated[str, Field(min_length=1, max_length=36)]
    status: Literal["Accepted", "Blocked", "Expired", "Invalid"] = "Accepted"
    expiry: datetime | None = None
    parent_id_tag: Annotated[str, Field(max_length=36)] | None = None

    @field_validator("expiry")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v


class AuthConfig(Section):
    unknown_tags: Literal["accept", "reject"] = "reject"
    cache_ttl_s: Annotated[int, Field(ge=0)] = 86400
    tags: list[AuthTagConfig] = []


class UplinkOcppConfig(Section):
    url: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


class UplinkMqttConfig(Section):
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    prefix: str = "edge"
    qos: Literal[0, 1] = 1


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
    v2g: V2gConfig = V2gConfig()
    auth: AuthConfig = AuthConfig()
    uplink: UplinkConfig = UplinkConfig()
    log: LogConfig = LogConfig()

    def station(self, station_id: str) -> StationConfig | None:
        """The `[[stations]]` entry of an id, if configured."""
        for s in self.stations:
            if s.id == station_id:
                return s
        return None


def resolve_path(path: Path | None) -> Path | None:
    """--config, else $EDGE_CONFIG, else /etc/edge/edge.toml if it exists, else None."""
    if path is not None:
        return path
    env = os.environ.get("EDGE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load_config(path: Path | None = None) -> Config:
    """Load and check the config; no file at all means the built-in defaults."""
    resolved = resolve_path(path)
    if resolved is None:
        return Config()
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [("(file)", f"cannot read {resolved}: {exc.strerror}")], str(resolved)
        ) from None
    return parse_config(text, str(resolved))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse TOML text; raises ConfigError listing every problem with its key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(syntax)", str(exc))], source) from None
    problems: list[tuple[str, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, data))
    problems.extend(_cross_checks(data, config))
    if problems:
        raise ConfigError(problems, source)
    assert config is not None
    return config


def example_config_text() -> str:
    """The annotated example config shipped with the package."""
    return resources.files("edge.data").joinpath("edge.example.toml").read_text("utf-8")


_FIELD_NAMES: frozenset[str] = frozenset()


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            break
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = next(
            (a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if inner is None:
            break
        model = inner
    return model  # type: ignore[no-any-return]


def _field_names() -> frozenset[str]:
    names: set[str] = set()
    for model in (
        Config,
        SiteConfig,
        OcppConfig,
        StationConfig,
        ApiConfig,
        StoreConfig,
        MeterConfig,
        LoadConfig,
        V2gConfig,
        AuthConfig,
        AuthTagConfig,
        UplinkConfig,
        UplinkOcppConfig,
        UplinkMqttConfig,
        LogConfig,
    ):
        names.update(model.model_fields)
    return frozenset(names)


def _pydantic_problems(exc: ValidationError, data: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        typ = err["type"]
        if typ == "extra_forbidden":
            parent = _model_at(loc[:-1])
            msg = f"unknown key {loc[-1]!r}; allowed: {_allowed(parent)}"
        elif typ == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"must be one of: {expected.replace(' or ', ', ')} (got {err['input']!r})"
        elif typ == "missing":
            msg = "required"
        elif typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            msg = f"{err['msg'].lower()} (got {err['input']!r})"
        elif typ == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            msg = f"{err['msg'].lower()} (got {err['input']!r})"
        # pydantic adds union member names ("float", "function-after[...]") to the
        # location of `X | None` fields; a key is made of field names and indexes only.
        last = loc[-1:] if typ == "extra_forbidden" else ()
        loc = tuple(
            p for p in loc[: len(loc) - len(last)] if isinstance(p, int) or p in _FIELD_NAMES
        )
        loc = loc + last
        problems.append((_key(loc), msg))
    return problems


def _cross_checks(data: dict[str, Any], config: Config | None) -> list[tuple[str, str]]:
    """Rules that span keys; run on the raw data so they report even when parsing failed."""
    problems: list[tuple[str, str]] = []
    ocpp = data.get("ocpp", {}) if isinstance(data.get("ocpp"), dict) else {}
    stations = data.get("stations", []) if isinstance(data.get("stations"), list) else []
    profile = ocpp.get("security_profile", 0)
    seen: set[str] = set()
    for i, st in enumerate(stations):
        if not isinstance(st, dict):
            continue
        sid = st.get("id")
        if isinstance(sid, str):
            why = _station_id_problem(sid)
            if why:
                problems.append((f"stations[{i}].id", why))
            if sid in seen:
                problems.append((f"stations[{i}].id", f"duplicate station id {sid!r}"))
            seen.add(sid)
        pw = st.get("password")
        if profile in (1, 2):
            if not pw:
                problems.append(
                    (
                        f"stations[{i}].password",
                        f"security_profile {profile} needs a password for every station",
                    )
                )
            elif isinstance(pw, str) and not 16 <= len(pw) <= 40:
                # OCPP 1.6 Security Whitepaper: AuthorizationKey of 16 to 40 bytes.
                problems.append((f"stations[{i}].password", "must be 16 to 40 characters"))
    if profile in (2, 3):
        for key in ("tls_cert", "tls_key"):
            if not ocpp.get(key):
                problems.append(
                    (f"ocpp.{key}", f"security_profile {profile} needs a TLS {key[4:]}")
                )
    if profile == 3 and not ocpp.get("tls_ca"):
        problems.append(
            ("ocpp.tls_ca", "security_profile 3 needs the CA of the chargers' certificates")
        )
    for key in ("tls_cert", "tls_key", "tls_ca"):
        value = ocpp.get(key)
        if isinstance(value, str) and value and not Path(value).is_file():
            problems.append((f"ocpp.{key}", f"file not found: {value}"))
    path = ocpp.get("path", "/ocpp")
    if isinstance(path, str) and not path.startswith("/"):
        problems.append(("ocpp.path", f"must start with '/' (got {path!r})"))
    problems.extend(_api_checks(data.get("api", {})))
    problems.extend(_meter_checks(data.get("meters", [])))
    problems.extend(_other_checks(data))
    return problems


def _station_id_problem(sid: str) -> str | None:
    # OCPP 2.0.1 Part 4 §3.1.1: identity ≤ 48 chars; ':' would break HTTP Basic auth.
    if not 1 <= len(sid) <= STATION_ID_MAX:
        return f"must be 1 to {STATION_ID_MAX} characters"
    if ":" in sid:
        return "must not contain ':' (it is the HTTP Basic user name)"
    if not (sid.isascii() and sid.isprintable()):
        return "must be printable ASCII"
    return None


def _api_checks(api: Any) -> list[tuple[str, str]]:
    if not isinstance(api, dict):
        return []
    listen = api.get("listen", "127.0.0.1:8080")
    if not isinstance(listen, str):
        return []
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return [("api.listen", f"must be host:port (got {listen!r})")]
    host = host.strip("[]")
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):  # a host name, not an address
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if not loopback and not api.get("token"):
        return [("api.token", f"required when api.listen is not on loopback ({listen})")]
    return []


def _meter_checks(meters: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not isinstance(meters, list):
        return problems
    seen: set[str] = set()
    for i, m in enumerate(meters):
        if not isinstance(m, dict):
            continue
        if m.get("id") in seen:
            problems.append((f"meters[{i}].id", f"duplicate meter id {m.get('id')!r}"))
        seen.add(m.get("id"))  # type: ignore[arg-type]
        transport = m.get("transport", "tcp")
        if transport in ("tcp", "rtu-over-tcp") and not m.get("host"):
            problems.append((f"meters[{i}].host", f"required for transport {transport!r}"))
        if transport == "rtu" and not m.get("device"):
            problems.append(
                (f"meters[{i}].device", "required for transport 'rtu' (e.g. /dev/ttyUSB0)")
            )
    return problems


def _other_checks(data: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    site = data.get("site", {})
    tz = site.get("timezone") if isinstance(site, dict) else None
    if isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(
                ("site.timezone", f"unknown IANA time zone {tz!r} (e.g. Europe/Berlin)")
            )
    load = data.get("load", {})
    if isinstance(load, dict):
        limit, margin = load.get("grid_limit_a"), load.get("margin_a", 2.0)
        failsafe = load.get("failsafe_current_a", 6.0)
        if not isinstance(limit, int | float) or limit <= 0:
            limit = None  # reported by the model check already
        if isinstance(limit, int | float) and isinstance(margin, int | float) and margin >= limit:
            problems.append(("load.margin_a", f"must be below grid_limit_a ({limit})"))
        if (
            isinstance(limit, int | float)
            and isinstance(failsafe, int | float)
            and failsafe > limit
        ):
            problems.append(("load.failsafe_current_a", f"must not exceed grid_limit_a ({limit})"))
    uplink = data.get("uplink", {})
    if isinstance(uplink, dict):
        mode = uplink.get("mode", "none")
        o = uplink.get("ocpp", {}) if isinstance(uplink.get("ocpp"), dict) else {}
        q = uplink.get("mqtt", {}) if isinstance(uplink.get("mqtt"), dict) else {}
        url = o.get("url")
        if mode == "ocpp" and not url:
            problems.append(("uplink.ocpp.url", "required when uplink.mode = 'ocpp'"))
        if isinstance(url, str) and url and not url.startswith(("ws://", "wss://")):
            problems.append(("uplink.ocpp.url", f"must start with ws:// or wss:// (got {url!r})"))
        if mode == "mqtt" and not q.get("host"):
            problems.append(("uplink.mqtt.host", "required when uplink.mode = 'mqtt'"))
    return problems


_FIELD_NAMES = _field_names()
