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
