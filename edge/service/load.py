"""The load-balancing loop: read, decide, send (DESIGN.md §3; STYLE.md practice 2).

Each cycle folds the registry and the meter board into a `SiteSnapshot`, lets the pure
allocator and hysteresis filter decide, and hands changed limits to one writer task per
station, so a charger that is slow to answer never holds up the cycle or the others.
A cycle runs every `[load] period_s`, and at once when the grid meter delivers a
reading or a session starts or ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

import structlog

from edge.config import Config
from edge.control.allocator import allocate
from edge.control.hysteresis import InForce, settle
from edge.domain.events import (
    Event,
    Recorded,
    StationBooted,
    StationConnected,
    StationDisconnected,
    TransactionEnded,
    TransactionStarted,
)
from edge.domain.load import (
    ROTATIONS,
    Allocation,
    ConnectorLoad,
    LimitReason,
    Phases,
    Policy,
    Setpoint,
    SiteSnapshot,
)
from edge.domain.site_meter import SiteMeterSample
from edge.domain.station import OcppVersion
from edge.errors import DeviceError
from edge.metrics import Metrics
from edge.ocpp import charger_profile, charging
from edge.ocpp.commands import Outbound
from edge.state.load_view import (
    ConnectorMemory,
    Key,
    StationSetting,
    circuits,
    connector_loads,
    connectors_of,
    phase_sum,
)
from edge.state.meters import MeterBoard
from edge.state.registry import Registry, StationState
from edge.store.load import record_limit_changes
from edge.store.writer import Store

log = structlog.get_logger("edge.load")

BACKOFF_S = 10.0  # a station that failed a limit is left alone (held) this long
LIMIT_TIMEOUT_S = 10.0
# A car's reported draw older than this is not subtracted from the grid import: the
# MeterValues a charger sends while its current changes (OCPP 1.6 §4.7 sampled values
# with ClockAlignedDataInterval / MeterValueSampleInterval) are the freshest it gets.
REPORT_MAX_AGE_S = 60.0  # a limit is a small CALL; a charger slower than this is unwell


class Charger(Protocol):
    """What the controller needs of the OCPP endpoint."""

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]: ...

    def version_of(self, station_id: str) -> OcppVersion | None: ...


def policy_of(config: Config) -> Policy:
    """The allocator's policy from `[load]`."""
    load = config.load
    return Policy(
        margin_a=load.margin_a,
        min_current_a=load.min_current_a,
        failsafe_current_a=load.failsafe_current_a,
        strategy=load.strategy,
        rotation_s=load.rotation_s,
        hysteresis_a=load.hysteresis_a,
        dwell_s=load.dwell_s,
        settle_s=max(10.0, 3 * load.period_s),
    )


class LoadController:
    """Keeps every phase and circuit under its limit; `enabled` when there is one."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        board: MeterBoard | None,
        chargers: Charger,
        store: Store | None,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry
        self.board = board
        self.chargers = chargers
        self.store = store
        self.clock = clock
        self.mono = mono
        self.metrics = metrics
        self.policy = policy_of(config)
        self.enabled = config.load.grid_limit_a is not None or bool(config.circuits)
        self.memory: dict[Key, ConnectorMemory] = {}
        self.allocation: Allocation | None = None
        self.grid_import_a: Phases | None = None
        self._circuit_of = {s: c.id for c in config.circuits for s in c.stations}
        self._circuit_specs = tuple((c.id, c.limit_a, c.parent, c.meter) for c in config.circuits)
        self._wanted: dict[str, dict[int, Setpoint]] = {}
        self._max_due: set[str] = set()
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._failed_until: dict[str, float] = {}
        self._quirks: dict[str, charger_profile.ChargingQuirks] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failsafe = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="load-control")
            log.info(
                "load.started",
                grid_limit_a=self.config.load.grid_limit_a,
                circuits=len(self.config.circuits),
                strategy=self.policy.strategy,
            )

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._writers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and the loop would outlive stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.load.period_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self.cycle()
            except Exception:
                log.exception("load.cycle.failed")

    # -- what wakes a cycle --------------------------------------------------------------

    def on_event(self, event: Event, recorded: Recorded) -> None:
        """A committed charger event (SiteService listener)."""
        if not self.enabled:
            return
        match event:
            case StationConnected() | StationBooted():
                self._max_due.add(event.station)
                self._quirks.pop(event.station, None)
                self._failed_until.pop(event.station, None)
                self._wake.set()
            case StationDisconnected():
                self._wake.set()
            case TransactionStarted() | TransactionEnded():
                connector = event.connector if event.connector is not None else 1
                m = self.memory.get((event.station, connector))
                if m is not None:  # a new session starts its turn afresh
                    m.running_since_s = m.paused_since_s = None
                self._wake.set()

    def on_meter(self, sample: SiteMeterSample, role: str) -> None:
        """A meter reading (MeterService listener): the grid meter's drives the loop."""
        if self.enabled and (role in ("grid", "building") or self._is_circuit_meter(sample)):
            self._wake.set()

    def _is_circuit_meter(self, sample: SiteMeterSample) -> bool:
        return any(meter == sample.meter_id for *_, meter in self._circuit_specs)

    # -- one cycle -----------------------------------------------------------------------

    def cycle(self) -> Allocation:
        """Read, decide, hand the changes to the writers; never awaits."""
        started = time.perf_counter()
        now_s = self.mono()
        snapshot = self.snapshot(now_s)
        allocation = allocate(snapshot, self.policy)
        self._remember(allocation, now_s)
        sends = list(settle(self._sendable(allocation), self._in_force(), now_s, self.policy))
        sends += self._refreshes(now_s, {s.key for s in sends})
        for sp in sends:
            self._wanted.setdefault(sp.station, {})[sp.connector] = sp
        for station in {sp.station for sp in sends} | self._due_max():
            self._write(station)
        self._observe(allocation, time.perf_counter() - started)
        return allocation

    def snapshot(self, now_s: float) -> SiteSnapshot:
        """The frozen site as of now."""
        loads = connector_loads(
            self.registry,
            self._settings(),
            self.memory,
            self._responsive,
            self.clock(),
            REPORT_MAX_AGE_S,
            self._default(),
        )
        self.grid_import_a = self._grid_import(loads)
        return SiteSnapshot(
            now_s,
            self.config.load.grid_limit_a,
            self.grid_import_a,
            loads,
            circuits(self._circuit_specs, self._meter_currents),
        )

    def _settings(self) -> dict[str, StationSetting]:
        out = {}
        for s in self.config.stations:
            quirks = self._quirks.get(s.id)
            out[s.id] = StationSetting(
                s.max_current_a,
                s.phases,
                ROTATIONS[s.phase_rotation],
                s.priority,
                self._circuit_of.get(s.id),
                quirks.min_current_a if quirks else None,
            )
        return out

    def _default(self) -> StationSetting:
        return StationSetting()

    def _responsive(self, st: StationState) -> bool:
        if not st.connected or self.chargers.version_of(st.id) is None:
            return False
        if st.boot_status not in (None, "Accepted"):
            return False  # 1.6 §4.2.1: no CSMS-initiated messages before Accepted
        return self.mono() >= self._failed_until.get(st.id, 0.0)

    def _grid_import(self, loads: tuple[ConnectorLoad, ...]) -> Phases | None:
        """The import at the connection point per phase; None = unknown (DESIGN.md §3)."""
        if self.board is None:
            return None
        grid = self.board.by_role("grid")
        if grid:
            return self._meter_currents(grid[0])
        building = self.board.by_role("building")
        if building:
            # A building meter sees everything but the chargers: add what they report.
            base = self._meter_currents(building[0])
            return None if base is None else phase_sum(loads, base)
        return None

    def _meter_currents(self, meter_id: str) -> Phases | None:
        assert self.board is not None
        if meter_id not in self.board.tracks:
            return None
        sample = self.board.trusted(meter_id, self.clock())
        if sample is None:
            return None
        values = sample.phase_values("current")
        if any(v is None for v in values):
            return None
        return abs(values[0] or 0.0), abs(values[1] or 0.0), abs(values[2] or 0.0)

    def _remember(self, allocation: Allocation, now_s: float) -> None:
        """Track each connector's turn: when it started charging, when it was paused."""
        for sp in allocation.setpoints:
            m = self.memory.setdefault(sp.key, ConnectorMemory())
            was = m.planned_a
            if sp.reason is LimitReason.UNRESPONSIVE:
                continue
            if sp.limit_a > 0 and not was:
                m.running_since_s = now_s
            elif sp.limit_a == 0 and was and sp.reason is LimitReason.PAUSED:
                m.paused_since_s = now_s
            m.planned_a, m.reason = sp.limit_a, sp.reason.value

    def _sendable(self, allocation: Allocation) -> Iterable[Setpoint]:
        return (sp for sp in allocation.setpoints if sp.reason is not LimitReason.UNRESPONSIVE)

    def _in_force(self) -> dict[Key, InForce]:
        out = {}
        for key, m in self.memory.items():
            if m.pending_a is not None:
                out[key] = InForce(m.pending_a, self.mono())  # being written: hold on
            elif m.limit_a is not None and m.since_s is not None:
                out[key] = InForce(m.limit_a, m.since_s)
        return out

    def _refreshes(self, now_s: float, sending: set[Key]) -> list[Setpoint]:
        """Rewrite limits before their fall-back period would start (2/3 of the way)."""
        after = self.config.load.fallback_after_s
        if not after:
            return []
        out = []
        for key, m in self.memory.items():
            due = m.written_s is not None and now_s - m.written_s >= after * 2 / 3
            if due and key not in sending and m.pending_a is None and m.limit_a is not None:
                reason = LimitReason(m.reason) if m.reason else LimitReason.FAIR_SHARE
                out.append(Setpoint(key[0], key[1], m.limit_a, reason))
        return out

    def _due_max(self) -> set[str]:
        due = set()
        for station in self._max_due:
            st = self.registry.stations.get(station)
            if st is not None and self._responsive(st):
                due.add(station)
        return due

    def _observe(self, allocation: Allocation, seconds: float) -> None:
        self.allocation = allocation
        if allocation.failsafe != self._failsafe:
            self._failsafe = allocation.failsafe
            if allocation.failsafe:
                log.warning("load.failsafe.entered", reason="load unknown: meter stale or frozen")
            else:
                log.info("load.failsafe.left")
        if self.metrics is not None:
            self.metrics.load_cycles.inc()
            self.metrics.load_cycle_seconds.observe(seconds)
            self.metrics.load_failsafe.set(1 if allocation.failsafe else 0)
            for i, amps in enumerate(allocation.ev_allocated_a):
                self.metrics.load_allocated.labels(f"L{i + 1}").set(amps)

    # -- writing limits: one task per station, one CALL at a time ---------------------

    def _write(self, station: str) -> None:
        task = self._writers.get(station)
        if task is None or task.done():
            self._writers[station] = asyncio.create_task(
                self._writer(station), name=f"load-writer-{station}"
            )

    async def _writer(self, station: str) -> None:
        version = self.chargers.version_of(station)
        if version is None:
            return
        quirks = self._quirks_of(station)
        if station in self._max_due:
            self._max_due.discard(station)
            await self._send_max(station, version, quirks)
        changes = []
        while self._wanted.get(station):
            _, sp = self._wanted[station].popitem()
            change = await self._send_limit(version, sp, self._quirks_of(station))
            if change is not None:
                changes.append(change)
            if self.mono() < self._failed_until.get(station, 0.0):
                self._wanted.pop(station, None)
                break
        if changes and self.store is not None:
            now = self.clock()
            await self.store.write(lambda c: record_limit_changes(c, changes, now))
        if changes:
            self._wake.set()  # what was held for this one may be due now

    def _quirks_of(self, station: str) -> charger_profile.ChargingQuirks:
        quirks = self._quirks.get(station)
        if quirks is None:
            cfg = self.config.station(station)
            st = self.registry.station(station)
            try:
                profile = charger_profile.for_station(
                    cfg.profile if cfg else None, st.identity.vendor, st.identity.model
                )
                quirks = profile.charging
            except charger_profile.ChargerProfileError as exc:
                log.error("load.charger_profile.failed", station=station, error=str(exc))
                quirks = charger_profile.ChargingQuirks()
            self._quirks[station] = quirks
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
                    self._quirks[sp.station] = variant
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
            self._failed_until[station] = self.mono() + BACKOFF_S
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
        m.limit_a, m.written_s = sp.limit_a, now_s
        if previous is None or abs(previous - sp.limit_a) > 1e-9:
            m.since_s = now_s
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
        allocation = self.allocation
        return {
            "station": sp.station,
            "connector": sp.connector,
            "limit_a": sp.limit_a,
            "previous_a": previous,
            "reason": sp.reason.value,
            "unit": quirks.rate_unit,
            "failsafe": bool(allocation and allocation.failsafe),
            "grid_import_a": list(self.grid_import_a) if self.grid_import_a else None,
        }

    def _rejected(self, sp: Setpoint, status: str | None) -> None:
        self._failed_until[sp.station] = self.mono() + BACKOFF_S
        error = f"SetChargingProfile {status} for {sp.limit_a:g} A on connector {sp.connector}"
        self.registry.station(sp.station).limit_error = error
        log.warning("load.limit.rejected", station=sp.station, error=error)
        if self.metrics is not None:
            self.metrics.load_limits.labels("rejected").inc()

    # -- constraints from outside --------------------------------------------------------

    def set_cap(self, kind: str, station: str, connector: int, amps: float | None) -> None:
        """A limit the allocator must stay under: `kind` "cloud" (a cloud charging
        profile, DESIGN.md §3: the charger gets min(cloud, local)) or "operator"
        (`edge station ID limit`); None lifts it. Connector 0 means every connector."""
        st = self.registry.station(station)
        targets = connectors_of(st) if connector == 0 else [connector]
        for cid in targets:
            m = self.memory.setdefault((station, cid), ConnectorMemory())
            if kind == "cloud":
                m.cloud_limit_a = amps
            else:
                m.operator_limit_a = amps
        self._wake.set()

    # -- read models ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `load` part of `edge status`."""
        a = self.allocation
        return {
            "managed": self.enabled,
            "strategy": self.policy.strategy,
            "margin_a": self.policy.margin_a,
            "ev_allocated_a": list(a.ev_allocated_a) if a else None,
            "available_a": list(a.available_a) if a and a.available_a else None,
            "failsafe": bool(a and a.failsafe),
            "circuits": [
                {"id": cid, "limit_a": limit, "parent": parent, "meter": meter}
                for cid, limit, parent, meter in self._circuit_specs
            ],
        }
