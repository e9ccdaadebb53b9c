"""What the issue's throughput targets leave per message, against what the parts cost.

The saturated figures say how fast edge is; this says how fast anything built on the
same parts could be on this machine. Each part below is a lower bound of work that a
central system meeting the issue must do for every message:
- the websocket layer: server CPU per message of `bench/echo_csms.py` (the `websockets`
  asyncio server answering a fixed CALLRESULT: framing, JSON in and out, socket calls);
- validation: the compiled validator of the official schema that edge uses, run on the
  generator's own payload (the issue: every message validated);
- a durable journal: bench/parts_csms.py's two rows per message (the journal row and its
  outbox record in the same transaction, DESIGN.md §2), inserted with executemany, 500 per
  fsync'd commit, into tables with no more than one index; edge's real schema does more;
- the generator: its CPU per message, measured in the same run (it shares the machine).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from loadgen import event_201, meter_16
from parts_csms import commit, open_journal

from edge.domain.station import OcppVersion
from edge.ocpp import schemas

SCENARIOS = {
    "mv16": ("1.6", "MeterValues", lambda n: meter_16(7, n), 5),
    "te201": ("2.0.1", "TransactionEvent", lambda n: event_201("TX7", n), 8),
}


def _cpu_us(fn: Callable[[int], Any], n: int) -> float:
    fn(0)
    started = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - started) / n * 1e6


def validation_us(scenario: str, n: int = 20_000) -> float:
    """CPU µs to validate one of the generator's payloads against the official schema."""
    version, action, make, _ = SCENARIOS[scenario]
    payload = make(1)
    ocpp = OcppVersion(version)
    return _cpu_us(lambda _i: schemas.validate_request(ocpp, action, payload), n)


def journal_us(scenario: str, messages: int = 50_000, per_commit: int = 500) -> float:
    """CPU µs per message of the least a durable journal with an outbox does (the one
    bench/parts_csms.py serves with)."""
    _, action, make, _ = SCENARIOS[scenario]
    payloads = [make(n) for n in range(per_commit)]
    with tempfile.TemporaryDirectory(prefix="edge-ceiling-") as tmp:
        conn = open_journal(Path(tmp) / "floor.sqlite")
        started = time.process_time()
        for first in range(0, messages, per_commit):
            rows = [
                (f"S{(first + i) % 1000:05d}", action, orjson.dumps(p))
                for i, p in enumerate(payloads)
            ]
            commit(conn, rows)
        spent = time.process_time() - started
        conn.close()
    return spent / messages * 1e6


def bounds(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per scenario: the per-message budget at the target rate and the lower bounds."""
    cpus = os.cpu_count() or 1
    out: dict[str, dict[str, Any]] = {}
    for scenario, (_, _, _, factor) in SCENARIOS.items():
        baseline = results["baseline"][f"{scenario}_msgs_per_s"]
        target = factor * baseline
        websocket = results["floor"][f"{scenario}_server_us_per_msg"]
        generator = results["edge"][f"{scenario}_generator_us_per_msg"]
        validate = validation_us(scenario)
        journal = journal_us(scenario)
        out[scenario] = {
            "factor": factor,
            "target_msgs_per_s": round(target),
            # Every core of the machine, generator included, per message at the target.
            "machine_budget_us": round(cpus * 1e6 / target, 1),
            # One thread (the event loop, where the websocket layer and validation run
            # when the handlers live in the daemon's process): one second per second.
            "thread_budget_us": round(1e6 / target, 1),
            "websocket_us": websocket,
            "validation_us": round(validate, 1),
            "journal_us": round(journal, 1),
            "generator_us": generator,
            "machine_floor_us": round(generator + websocket + validate + journal, 1),
            "thread_floor_us": round(websocket + validate, 1),
        }
    return out
