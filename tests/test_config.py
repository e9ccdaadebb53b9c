"""Config: every mistake reported at once, with its key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import example_config_text, load_config, parse_config, resolve_path
from edge.errors import ConfigError


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return dict(info.value.problems)


def test_no_text_means_the_defaults() -> None:
    cfg = parse_config("")
    assert cfg.ocpp.port == 9000 and cfg.ocpp.path == "/ocpp" and cfg.stations == []
    assert cfg.api.listen == "127.0.0.1:8080" and cfg.auth.unknown_tags == "reject"


def test_the_shipped_example_is_valid_and_is_the_top_level_file() -> None:
    cfg = parse_config(example_config_text())
    assert cfg.stations[0].id == "CP01"
    top = Path(__file__).parent.parent / "config" / "edge.example.toml"
    assert top.read_text() == example_config_text()


def test_every_mistake_is_reported_with_its_key() -> None:
    found = problems("""
[ocpp]
port = 70000
security_profile = 2

[[stations]]
id = "CP:1"
maxcurrent = 3

[[stations]]
id = "CP:1"
phases = 2

[[meters]]
id = "m1"
role = "grid"
profile = "eastron-sdm630"
transport = "rtu"

[api]
listen = "0.0.0.0:8080"

[auth]
unknown_tags = "maybe"

[uplink]
mode = "ocpp"
""")
    assert "65535" in found["ocpp.port"]
    assert "unknown key 'maxcurrent'" in found["stations[0].maxcurrent"]
    assert "max_current_a" in found["stations[0].maxcurrent"]  # lists the allowed keys
    assert "':'" in found["stations[0].id"]
    assert "duplicate" in found["stations[1].id"]
    assert "1, 3" in found["stations[1].phases"]
    assert "needs a password" in found["stations[0].password"]
    assert "TLS" in found["ocpp.tls_cert"] and "TLS" in found["ocpp.tls_key"]
    assert "required for transport 'rtu'" in found["meters[0].device"]
    assert "loopback" in found["api.token"]
    assert "'accept', 'reject'" in found["auth.unknown_tags"]
    assert "required when uplink.mode" in found["uplink.ocpp.url"]


def test_a_syntax_error_names_its_line() -> None:
    found = problems("[ocpp]\nport = = 3\n")
    assert "line 2" in found["(syntax)"]


def test_security_profile_1_wants_passwords_of_16_to_40_characters() -> None:
    found = problems('[ocpp]\nsecurity_profile = 1\n[[stations]]\nid = "A"\npassword = "short"\n')
    assert "16 to 40" in found["stations[0].password"]


def test_unknown_time_zone_and_bad_load_limits() -> None:
    found = problems(
        '[site]\ntimezone = "Mars/Olympus"\n[load]\ngrid_limit_a = 10\nmargin_a = 12\n'
    )
    assert "Mars/Olympus" in found["site.timezone"]
    assert "below grid_limit_a" in found["load.margin_a"]


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text('[site]\nid = "from-env"\n')
    monkeypatch.setenv("EDGE_CONFIG", str(env_file))
    assert resolve_path(None) == env_file
    assert load_config(None).site.id == "from-env"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[site]\nid = "explicit"\n')
    assert load_config(explicit).site.id == "explicit"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
