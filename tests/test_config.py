"""Config: defaults, the shipped example, and every mistake reported at once with its key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from edge import config as config_module
from edge import config_file
from edge.config import example_config_text, load_config, parse_config, resolve_path
from edge.errors import ConfigError
from tests.conftest import StartSite

REPO = Path(__file__).resolve().parent.parent
TLS_KEYS = ("tls_cert", "tls_key", "tls_ca")


def problems(text: str) -> dict[str, str]:
    """The (key -> message) report of an invalid config text."""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    found = dict(info.value.problems)
    assert len(found) == len(info.value.problems), "one message per key"
    return found


def test_empty_text_gives_the_defaults() -> None:
    cfg = parse_config("")
    assert (cfg.ocpp.host, cfg.ocpp.port, cfg.ocpp.path) == ("0.0.0.0", 9000, "/ocpp")
    assert cfg.ocpp.versions == ["2.1", "2.0.1", "1.6"] and cfg.ocpp.security_profile == 0
    assert cfg.ocpp.unknown_station_boot == "pending" and cfg.ocpp.compression is True
    assert cfg.api.listen == "127.0.0.1:8080" and cfg.store.outbox_max_rows == 200_000
    assert cfg.auth.unknown_tags == "reject" and cfg.uplink.mode == "none"
    assert cfg.stations == [] and cfg.meters == [] and cfg.load.grid_limit_a is None
    assert (cfg.log.level, cfg.log.format) == ("info", "auto")


def test_no_file_anywhere_runs_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_CONFIG", raising=False)
    monkeypatch.setattr(config_module, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert resolve_path(None) is None
    assert load_config() == parse_config("")


def test_the_example_parses_and_is_the_top_level_file() -> None:
    cfg = parse_config(example_config_text())
    assert [s.id for s in cfg.stations] == ["CP01"] and cfg.station("CP01") is not None
    assert cfg.station("CP99") is None
    assert cfg.ocpp.security_profile == 0 and cfg.stations[0].password is None
    top = REPO / "config" / "edge.example.toml"
    assert top.is_symlink() and top.read_text(encoding="utf-8") == example_config_text()


def test_the_examples_commented_out_keys_are_valid_too() -> None:
    uncommented = re.sub(r"^# (\[\[[\w.]+\]\]|\w+ = )", r"\1", example_config_text(), flags=re.M)
    found = problems(uncommented)
    # The certificate paths are placeholders; everything else must be accepted as written.
    tls = {f"{section}.{key}" for section in ("ocpp", "uplink.ocpp") for key in TLS_KEYS}
    assert set(found) == tls and all(m.startswith("file not found") for m in found.values())


async def test_the_example_runs(start_site: StartSite, tmp_path: Path) -> None:
    # Only what a test machine needs changes: loopback, free ports, a temporary store.
    text = (
        example_config_text()
        .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("port = 9000", "port = 0")
        .replace('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:0"')
        .replace("/var/lib/edge/edge.sqlite", str(tmp_path / "edge.sqlite"))
    )
    site = await start_site(text=text)
    async with aiohttp.ClientSession() as http, http.get(f"{site.api}/health/ready") as resp:
        assert resp.status == 200


def test_five_mistakes_in_five_sections_are_all_reported() -> None:
    found = problems("""
[site]
timezone = "Mars/Olympus"

[ocpp]
port = 70000

[[stations]]
id = "CP01"
maxcurrent = 16

[[meters]]
id = "grid"
role = "grid"
profile = "eastron-sdm630"
transport = "modbus"
host = "192.0.2.10"

[auth]
[[auth.tags]]
id_tag = "04A2B3"
status = "Ok"
""")
    assert found == {
        "site.timezone": "must be an IANA time zone such as Europe/Berlin or UTC "
        "(got 'Mars/Olympus')",
        "ocpp.port": "must be between 0 and 65535 (got 70000)",
        "stations[0].maxcurrent": "unknown key 'maxcurrent' (did you mean 'max_current_a'?);"
        " allowed: id, password, "
        "max_current_a, phases, bidirectional, priority, phase_rotation, profile, "
        "uplink_password, serial",
        "meters[0].transport": "must be one of: tcp, rtu, rtu-over-tcp (got 'modbus')",
        "auth.tags[0].status": "must be one of: Accepted, Blocked, Expired, Invalid (got 'Ok')",
    }


def test_a_syntax_error_is_one_problem_naming_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[site]\nid = "a"\n[ocpp]\nport = = 3\n', "edge.toml")
    [(_, message)] = info.value.problems
    assert "line 4" in message and "column" in message
    assert "edge.toml" in str(info.value)


def test_an_unknown_key_or_section_lists_what_is_allowed() -> None:
    found = problems(
        '[ocp]\nport = 1\n[uplink.mqtt]\nqso = 1\n[[auth.tags]]\nid_tag = "A"\nstaus = 1\n'
        "[store]\nwhatever = 1\n"
    )
    assert found["ocp"].startswith(
        "unknown key 'ocp' (did you mean 'ocpp'?); allowed: site, ocpp, stations, api,"
    )
    assert found["uplink.mqtt.qso"] == (
        "unknown key 'qso' (did you mean 'qos'?); allowed: host, port, tls, username,"
        " password, prefix, qos, homeassistant, discovery_prefix"
    )
    assert "(did you mean 'status'?)" in found["auth.tags[0].staus"]
    assert "allowed: id_tag, status, expiry, parent_id_tag" in found["auth.tags[0].staus"]
    # nothing close: no guess
    assert found["store.whatever"].startswith("unknown key 'whatever'; allowed: path,")


def test_config_file_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default, env, explicit = (tmp_path / f"{n}.toml" for n in ("default", "env", "explicit"))
    for path in (default, env, explicit):
        path.write_text(f'[site]\nid = "{path.stem}"\n')
    monkeypatch.setattr(config_file, "DEFAULT_PATH", default)
    monkeypatch.delenv("EDGE_CONFIG", raising=False)
    assert load_config().site.id == "default"
    monkeypatch.setenv("EDGE_CONFIG", str(env))
    assert resolve_path(None) == env and load_config().site.id == "env"
    assert load_config(explicit).site.id == "explicit"


def test_a_named_file_that_is_missing_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_CONFIG", str(tmp_path / "typo.toml"))
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config()
    assert info.value.source == str(tmp_path / "typo.toml")


def _security(profile: int, station: str = "", **ocpp: Path) -> str:
    files = "".join(f'{key} = "{path}"\n' for key, path in ocpp.items())
    return f'[ocpp]\nsecurity_profile = {profile}\n{files}[[stations]]\nid = "CP01"\n{station}'


def test_security_profiles_1_and_2_need_a_password_of_16_to_40_characters(tmp_path: Path) -> None:
    assert "security_profile = 1" in problems(_security(1))["stations[0].password"]
    too_long = problems(_security(1, f'password = "{"x" * 41}"\n'))["stations[0].password"]
    assert "16 to 40 characters" in too_long and "AuthorizationKey" in too_long
    too_short = problems(_security(1, 'password = "s3cret"\n'))["stations[0].password"]
    assert "16 to 40 characters" in too_short
    good = "s3cret-s3cret-s3cret"
    assert parse_config(_security(1, f'password = "{good}"\n')).stations[0].password == good
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.touch()
    key.touch()
    assert set(problems(_security(2, tls_cert=cert, tls_key=key))) == {"stations[0].password"}


def test_tls_profiles_need_existing_certificate_files(tmp_path: Path) -> None:
    pw = 'password = "s3cret-s3cret-s3cret"\n'
    assert set(problems(_security(2, pw))) == {"ocpp.tls_cert", "ocpp.tls_key"}
    cert, key, ca = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.touch()
    key.touch()
    found = problems(_security(3, tls_cert=cert, tls_key=key, tls_ca=ca))
    assert found == {"ocpp.tls_ca": f"file not found: {ca}"}
    ca.touch()
    assert parse_config(_security(3, tls_cert=cert, tls_key=key, tls_ca=ca)).ocpp.tls_ca == str(ca)
    assert "profile = 3" in problems(_security(3, tls_cert=cert, tls_key=key))["ocpp.tls_ca"]


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.168.1.5:8080", "[::]:8080", "edge:80"])
def test_an_api_off_loopback_needs_a_token(listen: str) -> None:
    assert "api.token" in problems(f'[api]\nlisten = "{listen}"\n')
    assert parse_config(f'[api]\nlisten = "{listen}"\ntoken = "t0ken"\n').api.token == "t0ken"


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"])
def test_an_api_on_loopback_needs_no_token(listen: str) -> None:
    assert parse_config(f'[api]\nlisten = "{listen}"\n').api.listen == listen


NO_PROFILE_P = (
    "no such profile 'p'; `edge profiles list` shows the shipped ones; "
    "or give a path to a .toml file"
)


def test_rules_across_keys_are_reported_together() -> None:
    found = problems("""
[[stations]]
id = "CP01"
[[stations]]
id = "CP01"
[[stations]]
id = "bad:id"
[[meters]]
id = "m"
role = "grid"
profile = "p"
[[meters]]
id = "m"
role = "pv"
profile = "p"
transport = "rtu"
device = "/dev/ttyUSB0"
[api]
listen = "8080"
[load]
grid_limit_a = 10
margin_a = 10
failsafe_current_a = 16
[uplink]
mode = "ocpp"
[uplink.mqtt]
port = "1883"
""")
    assert found == {
        "stations[1].id": "duplicate 'CP01', already at stations[0]",
        "stations[2].id": "must not contain ':', it is the HTTP Basic user name (got 'bad:id')",
        "api.listen": "must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got '8080')",
        "meters[0].host": "required for transport 'tcp', e.g. 192.0.2.10",
        "meters[0].profile": NO_PROFILE_P,
        "meters[1].id": "duplicate 'm', already at meters[0]",
        "meters[1].profile": NO_PROFILE_P,
        "load.margin_a": "must be below load.grid_limit_a = 10 (got 10)",
        "load.failsafe_current_a": "must not exceed load.grid_limit_a = 10 (got 16)",
        "uplink.ocpp.url": "required when uplink.mode = 'ocpp' (ws:// or wss:// URL)",
        "uplink.mqtt.port": "must be a whole number (got '1883')",
    }


def test_tag_expiry_needs_a_utc_offset() -> None:
    tags = '[[auth.tags]]\nid_tag = "A"\nexpiry = 2027-12-31T23:59:59Z\n'
    tags += '[[auth.tags]]\nid_tag = "B"\nexpiry = "2027-12-31T23:59:59+01:00"\n'
    a, b = parse_config(tags).auth.tags
    assert a.expiry is not None and b.expiry is not None
    assert a.expiry - b.expiry == timedelta(hours=1)
    found = problems('[[auth.tags]]\nid_tag = "C"\nexpiry = 2027-12-31T23:59:59\n')
    assert "UTC offset" in found["auth.tags[0].expiry"]


def test_meters_sharing_a_line_must_agree_and_not_share_a_unit(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[profile]\nname = "x"\n', encoding="utf-8")
    found = problems(f"""
[[meters]]
id = "grid"
role = "grid"
profile = "eastron-sdm630"
transport = "rtu"
device = "/dev/ttyUSB0"
unit = 1
[[meters]]
id = "pv"
role = "pv"
profile = "eastron-sdm630"
transport = "rtu"
device = "/dev/ttyUSB0"
baudrate = 19200
unit = 1
[[meters]]
id = "ev"
role = "ev"
profile = "{broken}"
host = "192.0.2.10"
""")
    assert found["meters[1].unit"] == "unit 1 on this bus is already meters[0]"
    assert found["meters[1].baudrate"] == (
        "19200 differs from meters[0] (9600) on the same line /dev/ttyUSB0"
    )
    assert found["meters[2].profile"].startswith(f"{broken}: profile.products: Field required")
    assert "edge profiles check" in found["meters[2].profile"]


def test_poll_interval_defaults_follow_the_role() -> None:
    cfg = parse_config("""
[[meters]]
id = "grid"
role = "grid"
profile = "eastron-sdm630"
host = "192.0.2.10"
[[meters]]
id = "pv"
role = "pv"
profile = "eastron-sdm630"
host = "192.0.2.11"
[[meters]]
id = "ev"
role = "ev"
profile = "eastron-sdm630"
host = "192.0.2.12"
poll_interval_s = 2
""")
    assert [m.interval_s for m in cfg.meters] == [1.0, 5.0, 2.0]


def test_circuits_are_checked_as_a_tree_of_known_stations_and_meters() -> None:
    found = problems("""
[[stations]]
id = "CP01"

[[stations]]
id = "CP02"

[[circuits]]
id = "hall"
limit_a = 63
parent = "garage"
stations = ["CP01"]

[[circuits]]
id = "garage"
limit_a = 32
parent = "hall"
meter = "sub"
stations = ["CP01", "CP09"]

[[circuits]]
id = "yard"
limit_a = 16
parent = "shed"

[[circuits]]
id = "yard"
limit_a = 0
""")
    assert found == {
        "circuits[0].parent": "'garage' leads back to 'hall'",
        "circuits[1].parent": "'hall' leads back to 'garage'",
        "circuits[1].meter": "no [[meters]] entry with id 'sub'",
        "circuits[1].stations[0]": "'CP01' is already on circuits[0]",
        "circuits[1].stations[1]": "no [[stations]] entry with id 'CP09'",
        "circuits[2].parent": "no circuit 'shed'; known: ['garage', 'hall', 'yard']",
        "circuits[3].id": "duplicate 'yard', already at circuits[2]",
        "circuits[3].limit_a": found["circuits[3].limit_a"],
    }
    assert "greater than 0" in found["circuits[3].limit_a"]


def test_a_station_naming_a_missing_charger_profile_is_told_what_exists() -> None:
    found = problems('[[stations]]\nid = "CP01"\nprofile = "acme-9000"\n')
    assert list(found) == ["stations[0].profile"]
    assert "no such charger profile" in found["stations[0].profile"]
    assert "generic-watts" in found["stations[0].profile"]


def test_load_timing_keys_have_bounds() -> None:
    found = problems("[load]\ngrid_limit_a = 32\nperiod_s = 0\nrotation_s = 5\n")
    assert set(found) == {"load.period_s", "load.rotation_s"}


def test_a_bound_on_an_optional_key_is_named() -> None:
    found = problems(
        '[[meters]]\nid = "m"\nrole = "grid"\nprofile = "eastron-sdm630"\n'
        'host = "192.0.2.1"\npoll_interval_s = 0.05\n'
    )
    assert found == {"meters[0].poll_interval_s": "must be at least 0.1 (got 0.05)"}
