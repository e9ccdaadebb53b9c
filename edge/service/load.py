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
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from edge.config import Config
from edge.control.allocator import MAIN, allocate
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
from edge.metrics import Metrics
from edge.service.load_writer import Charger, LimitWriter
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
from edge.store.writer import Store

log = structlog.get_logger("edge.load")

# A car's reported draw older than this is not subtracted from the grid import: the
# MeterValues a charger sends while its current changes (OCPP 1.6 §4.7 sampled values
# with ClockAlignedDataInterval / MeterValueSampleInterval) are the freshest it gets.
REPORT_MAX_AGE_S = 60.0


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
        self._wake = asyncio.Event()
        self.writer = LimitWriter(
            config,
            registry,
            chargers,
            store,
            self.memory,
            clock,
            mono,
            metrics,
            on_written=self._wake.set,
            context=self._context,
        )
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.writer.stop()

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
                self.writer.reset(event.station)
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
        self.writer.want(sends)
        for station in {sp.station for sp in sends} | self._due_max():
            self.writer.write(station)
        self._show_reasons(allocation, {sp.key for sp in sends})
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
            now_s,
            REPORT_MAX_AGE_S,
            self._metered_at(),
            self._default(),
        )
        self.grid_import_a = self._grid_import(loads)
        return SiteSnapshot(
            now_s,
            self.config.load.grid_limit_a,
            self.grid_import_a,
            loads,
            circuits(self._circuit_specs, self._meter_currents),
            self._non_ev_prior(),
        )

    def _metered_at(self) -> datetime | None:
        """When the oldest meter reading this cycle acts on was taken."""
        if self.board is None:
            return None
        now = self.clock()
        ids = [*self.board.by_role("grid"), *self.board.by_role("building")]
        ids += [meter for *_, meter in self._circuit_specs if meter is not None]
        taken = [
            s.taken_at for i in ids if i in self.board.tracks and (s := self.board.trusted(i, now))
        ]
        return min(taken, default=None)

    def _non_ev_prior(self) -> dict[str, Phases]:
        """The non-EV load the last cycle settled on, where the meter includes the cars
        (a building meter's reading already is the non-EV load: nothing to carry)."""
        if self.allocation is None:
            return {}
        prior = dict(self.allocation.non_ev_a)
        if self.board is not None and not self.board.by_role("grid"):
            prior.pop(MAIN, None)
        return prior

    def _settings(self) -> dict[str, StationSetting]:
        out = {}
        for s in self.config.stations:
            quirks = self.writer.quirks.get(s.id)
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
        return not self.writer.failing(st.id)

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

    def _show_reasons(self, allocation: Allocation, sending: set[Key]) -> None:
        """A limit that stays as it is may stay for a new reason (a session starts where
        an idle connector had 0 A and there is no room for it: it is now paused). Shown
        in `edge stations` at once; nothing is written to the charger."""
        for sp in allocation.setpoints:
            m = self.memory.get(sp.key)
            if sp.key in sending or m is None or m.pending_a is not None:
                continue
            if m.limit_a is None or abs(m.limit_a - sp.limit_a) > 1e-9:
                continue
            st = self.registry.stations.get(sp.station)
            if st is None or sp.connector not in st.limits:
                continue
            if st.limits[sp.connector][1] != sp.reason.value:
                st.limits[sp.connector] = (st.limits[sp.connector][0], sp.reason.value)
                st.limit_reason = sp.reason.value

    def _sendable(self, allocation: Allocation) -> Iterable[Setpoint]:
        return (sp for sp in allocation.setpoints if sp.reason is not LimitReason.UNRESPONSIVE)

    def _in_force(self) -> dict[Key, InForce]:
        out = {}
        for key, m in self.memory.items():
            if m.pending_a is not None:
                out[key] = InForce(m.pending_a, self.mono())  # being written: hold on
            elif m.limit_a is not None and m.since_s is not None:
                idle = m.in_force_reason == LimitReason.IDLE.value
                out[key] = InForce(m.limit_a, m.since_s, idle)
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
        for station in self.writer.max_due:
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

    def _context(self) -> dict[str, Any]:
        """What the site looked like, recorded with each limit change."""
        a = self.allocation
        return {
            "failsafe": bool(a and a.failsafe),
            "grid_import_a": list(self.grid_import_a) if self.grid_import_a else None,
        }

    def fallback_level_a(self) -> float:
        return self.writer.fallback_level_a()

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
            "available_a": [round(x, 2) for x in a.available_a] if a and a.available_a else None,
            "failsafe": bool(a and a.failsafe),
            "circuits": [
                {"id": cid, "limit_a": limit, "parent": parent, "meter": meter}
                for cid, limit, parent, meter in self._circuit_specs
            ],
        }
