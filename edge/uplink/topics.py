"""MQTT topics and payloads of DESIGN.md §4.4; pure (no client, no clock)."""

from __future__ import annotations

from typing import Any

import orjson

from edge.store.outbox import OutboxRecord

RESULTS = "results"  # the level under commands/ that carries answers, not commands


def status_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/status"


def state_topic(prefix: str, site: str, station: str) -> str:
    return f"{prefix}/{site}/stations/{station}/state"


def event_topic(prefix: str, site: str, kind: str) -> str:
    return f"{prefix}/{site}/events/{kind}"


def commands_filter(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/commands/+/+"


def result_topic(prefix: str, site: str, request_id: str) -> str:
    return f"{prefix}/{site}/commands/{RESULTS}/{request_id}"


def parse_command_topic(prefix: str, site: str, topic: str) -> tuple[str, str] | None:
    """(station, command) of `{prefix}/{site}/commands/{station}/{command}`; None for
    anything else, including the results the gateway publishes itself."""
    head = f"{prefix}/{site}/commands/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or not all(parts) or parts[0] == RESULTS:
        return None
    return parts[0], parts[1]


def envelope(record: OutboxRecord, site: str) -> bytes:
    """`{"id", "seq", "type", "site", "station", "time", "data"}`; the record's data is
    spliced in as stored, so the charger's own values go up unchanged."""
    head = orjson.dumps(
        {
            "id": record.record_id,
            "seq": record.seq,
            "type": record.type,
            "site": site,
            "station": record.station,
            "time": record.time,
        }
    )
    return head[:-1] + b',"data":' + record.data + b"}"


def command_result(request_id: str, station: str, command: str, **outcome: Any) -> bytes:
    """The answer to one command, published on its results topic."""
    return orjson.dumps(
        {"request_id": request_id, "station": station, "command": command, **outcome}
    )


def meter_state_topic(prefix: str, site: str, meter: str) -> str:
    return f"{prefix}/{site}/meters/{meter}/state"


# Home Assistant MQTT discovery: one retained config per entity under
# `{discovery_prefix}/{component}/{object_id}/config`, object_id = unique_id.
_STATION_SENSORS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "status",
        "{{ value_json.connectors[0].status if value_json.connectors else 'Unknown' }}",
        {},
    ),
    (
        "current",
        "{{ value_json.current_a }}",
        {"unit_of_measurement": "A", "device_class": "current", "state_class": "measurement"},
    ),
    ("limit", "{{ value_json.limit_a }}", {"unit_of_measurement": "A", "device_class": "current"}),
    ("limit_reason", "{{ value_json.limit_reason }}", {}),
)
_METER_SENSORS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "power",
        "{{ value_json.power_w }}",
        {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement"},
    ),
    (
        "import",
        "{{ value_json.import_wh }}",
        {
            "unit_of_measurement": "Wh",
            "device_class": "energy",
            "state_class": "total_increasing",
        },
    ),
    *(
        (
            f"current_l{i + 1}",
            f"{{{{ value_json.current_a[{i}] }}}}",
            {"unit_of_measurement": "A", "device_class": "current", "state_class": "measurement"},
        )
        for i in range(3)
    ),
)


def discovery(
    prefix: str, site: str, discovery_prefix: str, stations: list[str], meters: list[str]
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config: sensors per station and per meter,
    available while the gateway's status is `online`."""
    out = []
    for kind, names, state, sensors in (
        ("station", stations, state_topic, _STATION_SENSORS),
        ("meter", meters, meter_state_topic, _METER_SENSORS),
    ):
        for name in names:
            device = {
                "identifiers": [f"edge_{site}_{kind}_{name}"],
                "name": f"{name}",
                "via_device": f"edge_{site}",
            }
            for key, template, extra in sensors:
                uid = _object_id(f"edge_{site}_{kind}_{name}_{key}")
                config = {
                    "name": key.replace("_", " "),
                    "unique_id": uid,
                    "object_id": uid,
                    "state_topic": state(prefix, site, name),
                    "value_template": template,
                    "availability_topic": status_topic(prefix, site),
                    "device": device,
                    **extra,
                }
                topic = f"{discovery_prefix}/sensor/{uid}/config"
                out.append((topic, orjson.dumps(config)))
    return out


def _object_id(text: str) -> str:
    """Home Assistant ids take [a-zA-Z0-9_-] only."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)
