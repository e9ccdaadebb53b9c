"""Prometheus metrics of one daemon; each instance owns its registry (tests run several)."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edge.store.room import LOCAL_TABLES, DiskState, free_bytes


class Metrics:
    """The counters the daemon exposes on `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "edge_ocpp_connections", "Open charger connections", ["version"], registry=r
        )
        self.connects = Counter(
            "edge_ocpp_connects_total", "Accepted charger connections", ["version"], registry=r
        )
        self.rejected_handshakes = Counter(
            "edge_ocpp_handshakes_rejected_total",
            "Charger handshakes refused",
            ["reason"],
            registry=r,
        )
        self.messages = Counter(
            "edge_ocpp_messages_total",
            "OCPP CALLs by direction (in = charger to gateway), action and version",
            ["direction", "action", "version"],
            registry=r,
        )
        self.errors = Counter(
            "edge_ocpp_errors_total", "CALLERRORs sent to chargers, by code", ["code"], registry=r
        )
        self.inbox_holds = Counter(
            "edge_ocpp_inbox_holds_total",
            "Times a charger was not read from because too many of its CALLs were waiting",
            ["version"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "edge_store_commit_seconds",
            "Duration of one group commit",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.commit_batch = Histogram(
            "edge_store_commit_batch_size",
            "Records per group commit",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )

        self.meter_up = Gauge(
            "edge_meter_ok",
            "1 when the meter's latest reading is fresh and not frozen",
            ["meter", "role"],
            registry=r,
        )
        self.meter_age = Gauge(
            "edge_meter_reading_age_seconds",
            "Age of the meter's last good reading",
            ["meter", "role"],
            registry=r,
        )
        self.meter_polls = Gauge(
            "edge_meter_polls", "Polls of the meter since start", ["meter", "result"], registry=r
        )
        self.meter_power = Gauge(
            "edge_meter_power_watts",
            "Total active power (positive = import)",
            ["meter", "role"],
            registry=r,
        )

        self.load_cycles = Counter(
            "edge_load_cycles_total", "Load-balancing control cycles", registry=r
        )
        self.load_cycle_seconds = Histogram(
            "edge_load_cycle_seconds",
            "Snapshot + allocation + hysteresis of one control cycle",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.load_limits = Counter(
            "edge_load_limit_changes_total",
            "Charging limits written to chargers, by outcome",
            ["outcome"],
            registry=r,
        )
        self.load_failsafe = Gauge(
            "edge_load_failsafe",
            "1 while some load is unknown and the fail-safe applies",
            registry=r,
        )
        self.load_allocated = Gauge(
            "edge_load_ev_allocated_amperes",
            "Current planned for the EVs per grid phase",
            ["phase"],
            registry=r,
        )

        self.uplink_connected = Gauge(
            "edge_uplink_connected", "1 while the uplink is connected to the cloud", registry=r
        )
        self.uplink_delivered = Counter(
            "edge_uplink_delivered_total",
            "Outbox records the cloud acknowledged",
            registry=r,
        )
        self.uplink_backlog = Gauge(
            "edge_uplink_backlog", "Outbox records waiting for the cloud", registry=r
        )
        self.uplink_oldest = Gauge(
            "edge_uplink_oldest_age_seconds",
            "Age of the oldest record waiting for the cloud (0 when none)",
            registry=r,
        )

        # One child per (direction, action, version), looked up once: labels() costs more
        # than the increment itself on the per-message path.
        self._message_children: dict[tuple[str, str, str], Any] = {}

    def message(self, direction: str, action: str, version: str) -> None:
        """Count one OCPP CALL. `action` must be a name of the version's schema set (or
        "unknown"): a charger's made-up action names must not mint series."""
        key = (direction, action, version)
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.messages.labels(*key)
        child.inc()

    def on_commit(self, batch: int, seconds: float) -> None:
        """Feed one group commit into the histograms (called from the writer thread)."""
        self.commit_seconds.observe(seconds)
        self.commit_batch.observe(batch)

    def watch_disk(self, disk: DiskState) -> None:
        """Gauges read off the store's disk state at each scrape."""
        r = self.registry
        Gauge(
            "edge_store_disk_full",
            "1 since a write failed for want of room, until the disk has room again",
            registry=r,
        ).set_function(lambda: float(disk.full))
        Gauge(
            "edge_store_disk_free_bytes",
            "Free space on the filesystem holding the database",
            registry=r,
        ).set_function(lambda: float(free_bytes(disk.path) or 0))
        Gauge(
            "edge_store_reserve_held",
            "1 while the reserve of free space beside the database is held",
            registry=r,
        ).set_function(lambda: float(disk.reserve.held))
        dropped = Gauge(
            "edge_store_dropped_rows",
            "Journal rows dropped to make room on a full disk, since the database began",
            ["table"],
            registry=r,
        )
        for table in LOCAL_TABLES:
            dropped.labels(table).set_function(functools.partial(_dropped, disk, table))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _dropped(disk: DiskState, table: str) -> float:
    return float(disk.dropped.get(table, 0))
