"""Writing load-balancing limits to chargers: one task per station, one CALL at a time.

A station's writer sends its station max profile when it is due (after a boot or a
reconnect), then the newest wanted limit of each connector, trying the charger
profile's `on_reject` variants in turn. A charger that does not answer, or rejects
every variant, is left alone for BACKOFF_S and counts as unresponsive meanwhile (it
keeps its last limit in the allocation). Accepted changes are journaled together.
After a boot or a reconnect it also has the charger sample its car's current
(edge/ocpp/metering.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from edge.config import Config
from edge.domain.load import Setpoint
from edge.domain.station import OcppVersion
from edge.errors import DeviceError
from edge.metrics import Metrics
from edge.ocpp import charger_profile, charging, metering
from edge.ocpp.commands import Outbound
from edge.state.load_view import ConnectorMemory, Key, connectors_of
from edge.state.registry import Registry
from edge.store.load import record_limit_changes
from edge.store.writer import Store

log = structlog.get_logger("edge.load")

BACKOFF_S = 10.0  # a station that failed a limit is left alone (held) this long
LIMIT_TIMEOUT_S = 10.0  # a limit is a small CALL; a charger slower than this is unwell


def station_profile(
    config: Config, registry: Registry, station: str
) -> charger_profile.ChargerProfile:
    """The charger profile a station uses: the one its `[[stations]] profile` names, else
    one matching the vendor and model of its last boot. ChargerProfileError if broken."""
    cfg = config.station(station)
    identity = registry.station(station).identity
    return charger_profile.for_station(
        cfg.profile if cfg else None, identity.vendor, identity.model
    )


class Charger(Protocol):
    """What the writer needs of the OCPP endpoint."""

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]: ...

    def version_of(self, station_id: str) -> OcppVersion | None: ...


class LimitWriter:
    """The per-station writer tasks and what they know of each charger."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        chargers: Charger,
        store: Store | None,
        memory: dict[Key, ConnectorMemory],
        clock: Callable[[], datetime],
        mono: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        on_written: Callable[[], None] = lambda: None,
        context: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.config = config
        self.registry = registry
        self.chargers = chargers
        self.store = store
        self.memory = memory
        self.clock = clock
        self.mono = mono
        self.metrics = metrics
        self.on_written = on_written  # accepted changes: a held increase may be due now
        self.context = context  # site figures recorded with each change
        self.wanted: dict[str, dict[int, Setpoint]] = {}
        self.max_due: set[str] = set()
        self.metering_due: set[str] = set()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failed_until: dict[str, float] = {}
        self.quirks: dict[str, charger_profile.ChargingQuirks] = {}
        self._circuit_of = {s: c.id for c in config.circuits for s in c.stations}

    def want(self, setpoints: list[Setpoint]) -> None:
        """Queue limits; the newest per connector wins."""
        for sp in setpoints:
            self.wanted.setdefault(sp.station, {})[sp.connector] = sp

    def reset(self, station: str) -> None:
        """A station (re)connected or booted: its max profile and metering settings are
        due, its quirks and failures are forgotten."""
        self.max_due.add(station)
        if self.config.load.meter_values_interval_s:
            self.metering_due.add(station)
        self.quirks.pop(station, None)
        self.failed_until.pop(station, None)

    def failing(self, station: str) -> bool:
        return self.mono() < self.failed_until.get(station, 0.0)

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def write(self, station: str) -> None:
        task = self.tasks.get(station)
        if task is None or task.done():
            self.tasks[station] = asyncio.create_task(
                self._writer(station), name=f"load-writer-{station}"
            )

    async def _writer(self, station: str) -> None:
        version = self.chargers.version_of(station)
        if version is None:
            return
        quirks = self.quirks_of(station)
        if station in self.max_due:
            self.max_due.discard(station)
            await self._send_max(station, version, quirks)
        changes = []
        while self.wanted.get(station):
            _, sp = self.wanted[station].popitem()
            change = await self._send_limit(version, sp, self.quirks_of(station))
            if change is not None:
                changes.append(change)
            if self.mono() < self.failed_until.get(station, 0.0):
                self.wanted.pop(station, None)
                break
        if changes and self.store is not None:
            now = self.clock()
            await self.store.write(lambda c: record_limit_changes(c, changes, now))
        if changes:
            self.on_written()  # what was held for this one may be due now
        if station in self.metering_due and not self.failing(station):
            # After the limits, and not while the charger fails them: a charger slow to
            # answer these must not hold its limits back.
            self.metering_due.discard(station)
            await self._configure_metering(station, version)

    def quirks_of(self, station: str) -> charger_profile.ChargingQuirks:
        quirks = self.quirks.get(station)
        if quirks is None:
            try:
                quirks = station_profile(self.config, self.registry, station).charging
            except charger_profile.ChargerProfileError as exc:
                log.error("load.charger_profile.failed", station=station, error=str(exc))
                quirks = charger_profile.ChargingQuirks()
            self.quirks[station] = quirks
        return quirks

    def _phases(self, station: str) -> int:
        cfg = self.config.station(station)
        return cfg.phases if cfg else 3

    def max_level_a(self, station: str) -> float:
        """The station max profile: its own max, never above any limit it is under."""
        cfg = self.config.station(station)
        level = cfg.max_current_a if cfg else 32.0
        margin = self.config.load.margin_a
        if self.config.load.grid_limit_a is not None:
            level = min(level, self.config.load.grid_limit_a - margin)
        limits = {c.id: c for c in self.config.circuits}
        node = self._circuit_of.get(station)
        seen: set[str] = set()
        while node is not None and node in limits and node not in seen:
            seen.add(node)
            level = min(level, limits[node].limit_a - margin)
            node = limits[node].parent
        return max(math.floor(level * 10) / 10, 0.0)

    def fallback_level_a(self) -> float:
        """Where a charger goes by itself when edge stops rewriting its limit: the
        fail-safe current or the static share of the grid limit, whichever is lower;
        0 when that is below the minimum current."""
        load = self.config.load
        level = load.failsafe_current_a
        if load.grid_limit_a is not None:
            count = sum(len(connectors_of(st)) for st in self.registry.stations.values())
            level = min(level, (load.grid_limit_a - load.margin_a) / max(count, 1))
        level = math.floor(level * 10) / 10
        return level if level >= load.min_current_a else 0.0

    async def _send_max(
        self, station: str, version: OcppVersion, quirks: charger_profile.ChargingQuirks
    ) -> None:
        amps = self.max_level_a(station)
        out = charging.max_call(version, amps, self._phases(station), quirks, self.clock())
        status = await self._call(station, out)
        if status == "Accepted":
            log.info("load.max_profile.set", station=station, limit_a=amps)
        elif status is not None:
            log.warning("load.max_profile.rejected", station=station, status=status)

    async def _configure_metering(self, station: str, version: OcppVersion) -> None:
        """Have the charger report its car's current often enough (edge/ocpp/metering.py);
        what it refuses shows in the station's `metering_error`."""
        st = self.registry.station(station)
        read = metering.read_call(version)
        response = await self._ask(station, read)
        if response is None:
            st.metering_error = f"{read.action} failed"
            return
        current = metering.parse_read(version, response)
        refused = []
        count = metering.too_many(current)
        if count is not None:
            name = metering.setting_name(version, metering.MEASURANDS)
            refused.append(f"{name} would hold {count}, the charger takes {current.max_measurands}")
            log.warning(
                "load.metering.refused",
                station=station,
                setting=name,
                value=",".join(metering.wanted_measurands(current)),
                status="TooLong",
                max_length=current.max_measurands,
            )
        for which, value in metering.changes(current, self.config.load.meter_values_interval_s):
            name = metering.setting_name(version, which)
            answer = await self._ask(station, metering.write_call(version, which, value))
            if answer is None:  # not answering: the rest would fail the same way
                refused.append(f"{name} failed")
                break
            status = metering.write_status(version, answer)
            if status == "Accepted":
                log.info("load.metering.set", station=station, setting=name, value=value)
            elif status == "RebootRequired":
                log.warning(
                    "load.metering.reboot_required", station=station, setting=name, value=value
                )
            else:
                # Without Current.Import its cars' draw counts as building load.
                refused.append(f"{name} {status}")
                log.warning(
                    "load.metering.refused",
                    station=station,
                    setting=name,
                    value=value,
                    status=status,
                )
        st.metering_error = ", ".join(refused) or None

    async def _ask(self, station: str, out: Outbound) -> dict[str, Any] | None:
        """A CALL whose failure (no connection, no answer, a CALLERROR) only costs what it
        would have set: logged, never raised."""
        try:
            return await self.chargers.call(
                station, out.action, out.payload, timeout=LIMIT_TIMEOUT_S
            )
        except DeviceError as exc:
            log.warning("load.metering.failed", station=station, error=str(exc))
            return None

    async def _send_limit(
        self, version: OcppVersion, sp: Setpoint, quirks: charger_profile.ChargingQuirks
    ) -> dict[str, Any] | None:
        m = self.memory.setdefault(sp.key, ConnectorMemory())
        m.pending_a = sp.limit_a
        try:
            tried = [quirks, *(quirks.retried(how) for how in quirks.on_reject)]
            for variant in tried:
                status = await self._call(sp.station, self._limit_out(version, sp, variant))
                if status is None:
                    return None  # no answer: held at its last limit, retried later
                if status == "Accepted":
                    self.quirks[sp.station] = variant
                    return self._accepted(sp, m, variant)
            self._rejected(sp, status)
            return None
        finally:
            m.pending_a = None

    def _limit_out(
        self, version: OcppVersion, sp: Setpoint, quirks: charger_profile.ChargingQuirks
    ) -> Outbound:
        after = self.config.load.fallback_after_s
        fallback = (after, self.fallback_level_a()) if after else None
        phases = self._phases(sp.station)
        return charging.limit_call(
            version, sp.connector, sp.limit_a, phases, quirks, self.clock(), fallback
        )

    async def _call(self, station: str, out: Outbound) -> str | None:
        """The charger's status, or None when it did not answer (it is then held)."""
        try:
            response = await self.chargers.call(
                station, out.action, out.payload, timeout=LIMIT_TIMEOUT_S
            )
        except DeviceError as exc:  # not connected, no answer in time, CALLERROR
            self.failed_until[station] = self.mono() + BACKOFF_S
            self.registry.station(station).limit_error = str(exc)
            log.warning("load.limit.unanswered", station=station, error=str(exc))
            if self.metrics is not None:
                self.metrics.load_limits.labels("failed").inc()
            return None
        status = response.get("status")
        return status if isinstance(status, str) else "Rejected"

    def _accepted(
        self, sp: Setpoint, m: ConnectorMemory, quirks: charger_profile.ChargingQuirks
    ) -> dict[str, Any]:
        now_s = self.mono()
        previous = m.limit_a
        m.limit_a, m.written_s, m.in_force_reason = sp.limit_a, now_s, sp.reason.value
        if previous is None or abs(previous - sp.limit_a) > 1e-9:
            m.since_s = now_s
            m.changed(previous, now_s)
        st = self.registry.station(sp.station)
        st.limits[sp.connector] = (sp.limit_a, sp.reason.value)
        st.limit_a = round(sum(a for a, _ in st.limits.values()), 1)
        st.limit_reason = sp.reason.value
        st.limit_since = self.clock()
        st.limit_error = None
        if self.metrics is not None:
            self.metrics.load_limits.labels("accepted").inc()
        log.info(
            "load.limit.changed",
            station=sp.station,
            connector=sp.connector,
            limit_a=sp.limit_a,
            previous_a=previous,
            reason=sp.reason.value,
        )
        return {
            "station": sp.station,
            "connector": sp.connector,
            "limit_a": sp.limit_a,
            "previous_a": previous,
            "reason": sp.reason.value,
            "unit": quirks.rate_unit,
            **self.context(),
        }

    def _rejected(self, sp: Setpoint, status: str | None) -> None:
        self.failed_until[sp.station] = self.mono() + BACKOFF_S
        error = f"SetChargingProfile {status} for {sp.limit_a:g} A on connector {sp.connector}"
        self.registry.station(sp.station).limit_error = error
        log.warning("load.limit.rejected", station=sp.station, error=error)
        if self.metrics is not None:
            self.metrics.load_limits.labels("rejected").inc()
