"""The TOML configuration: pydantic models of DESIGN.md §4.2, checked in one pass.

Every problem is reported at once as (key, message), the key in TOML notation
(`stations[2].max_current_a`). `edge/data/edge.example.toml` explains each key.
"""

from __future__ import annotations

import functools
import tomllib
import zoneinfo
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from edge.config_errors import Problem, file_order, problem
from edge.config_file import DEFAULT_PATH as DEFAULT_PATH
from edge.config_file import resolve_path as resolve_path
from edge.errors import ConfigError

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
PASSWORD_RULE = "16 to 40 characters (OCPP Security Whitepaper AuthorizationKey)"


def _password(value: str) -> str:
    if not 16 <= len(value) <= 40:
        raise ValueError(f"must be {PASSWORD_RULE} (got {len(value)} characters)")
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


def host_port(listen: str) -> tuple[str, int] | None:
    """Split "host:port" ("[::1]:8080" for IPv6); None when the text is not of that form."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)


def _listen(value: str) -> str:
    if host_port(value) is None:
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
    # MiB of free space held beside the database and given back when the disk is full,
    # so that the store can still make room (edge/store/room.py); 0: none.
    reserve_mb: Annotated[int, Field(ge=0, le=1024)] = 8


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
    # s between the MeterValues edge asks each charger for during a session, with the
    # car's current in them (edge/ocpp/metering.py); 0 leaves the chargers' settings alone
    meter_values_interval_s: Annotated[int, Field(ge=0, le=3600)] = 10


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
        """The `[[stations]]` entry of an id, if configured (asked per charger message)."""
        return self._stations_by_id.get(station_id)

    @functools.cached_property
    def _stations_by_id(self) -> dict[str, StationConfig]:
        return {s.id: s for s in self.stations}


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
        problems = [problem(err, Config) for err in exc.errors()]
    # Rules across keys run on the raw tables, so they report even when a model failed.
    # They read the models' defaults, so their module imports this one: imported here.
    from edge.config_checks import cross_checks

    problems.extend(cross_checks(data))
    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: file_order(p, Config)), source)
    return config


def example_config_text() -> str:
    """The annotated example config shipped with the package."""
    return resources.files("edge.data").joinpath("edge.example.toml").read_text("utf-8")
