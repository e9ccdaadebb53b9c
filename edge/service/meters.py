"""The site meters in the daemon: buses, pollers, the live board, the journal.

Wires `edge.modbus` (I/O) to `edge.state.meters` (the board) and the store. Polling runs
in its own tasks and only ever awaits its bus, so the OCPP side never waits on a meter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from edge.config import Config, MeterConfig
from edge.domain.site_meter import MeterHealth, Plausibility, SiteMeterSample, implausible
from edge.errors import DeviceError
from edge.metrics import Metrics
from edge.modbus.profile import MeterProfile, load_profile
from edge.state.meters import MeterBoard
from edge.store.site_meters import record_sample
from edge.store.writer import Store

if TYPE_CHECKING:
    # pymodbus costs tens of ms at start-up; a site without [[meters]] never imports it.
    from edge.modbus.bus import Bus, BusSettings
    from edge.modbus.poller import MeterPoller, MeterReader

log = structlog.get_logger("edge.meters")

WATCH_S = 1.0  # how often health transitions (stale, frozen) are looked for


def bus_settings(m: MeterConfig) -> BusSettings:
    """The bus a `[[meters]]` entry is on."""
    from edge.modbus.bus import BusSettings

    return BusSettings(
        transport=m.transport,
        host=m.host,
        port=m.port,
        device=m.device,
        baudrate=m.baudrate,
        parity=m.parity,
        stopbits=m.stopbits,
        timeout_s=m.timeout_s,
    )


class MeterService:
    """Every configured meter: one poller each, one client per bus."""

    def __init__(
        self,
        config: Config,
        store: Store | None,
        clock: Callable[[], datetime],
        ev_current_a: Callable[[], float] = lambda: 0.0,
        profiles: dict[str, MeterProfile] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.config = {m.id: m for m in config.meters}
        self.store = store
        self.clock = clock
        self.ev_current_a = ev_current_a
        self.board = MeterBoard(
            ((m.id, m.role, m.profile) for m in config.meters), config.load.stale_after_s
        )
        self.buses: dict[tuple[Any, ...], Bus] = {}
        self.readers: dict[str, MeterReader] = {}
        self.pollers: dict[str, MeterPoller] = {}
        if config.meters:
            self._add_meters(config, clock, profiles or {})
        self._journaled: dict[str, datetime] = {}
        self._health: dict[str, MeterHealth] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[SiteMeterSample, str], None]] = []  # (sample, role)

    def _add_meters(
        self,
        config: Config,
        clock: Callable[[], datetime],
        profiles: dict[str, MeterProfile],
    ) -> None:
        from edge.modbus.bus import Bus
        from edge.modbus.poller import MeterPoller, MeterReader

        for m in config.meters:
            profile = profiles.get(m.profile) or load_profile(m.profile)
            settings = bus_settings(m)
            bus = self.buses.setdefault(settings.key, Bus(settings))
            reader = MeterReader(m.id, profile, bus, m.unit)
            self.readers[m.id] = reader
            self.pollers[m.id] = MeterPoller(
                reader, m.interval_s, self._on_sample, self.board.failed, clock
            )

    def start(self) -> None:
        """Start polling every meter, and watching their health."""
        for meter_id, poller in self.pollers.items():
            self._tasks.append(asyncio.create_task(poller.run(), name=f"meter-{meter_id}"))
        if self.pollers:
            self._tasks.append(asyncio.create_task(self._watch(), name="meter-watch"))

    async def stop(self) -> None:
        """Stop polling, let journal writes finish, close the buses."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        for bus in self.buses.values():
            await bus.close()

    def _on_sample(self, sample: SiteMeterSample) -> None:
        self.board.sample(sample, self.ev_current_a())
        m = self.config[sample.meter_id]
        for listener in self.listeners:
            listener(sample, m.role)
        last = self._journaled.get(m.id)
        due = last is None or (sample.taken_at - last).total_seconds() >= m.journal_interval_s
        if due and self.store is not None:
            self._journaled[m.id] = sample.taken_at
            task = asyncio.create_task(self._journal(sample, m))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _journal(self, sample: SiteMeterSample, m: MeterConfig) -> None:
        assert self.store is not None
        now = self.clock()
        try:
            await self.store.write(lambda c: record_sample(c, sample, m.role, m.profile, now))
        except Exception:
            log.exception("meter.journal_failed", meter=m.id)

    async def _watch(self) -> None:
        """Log each meter's health when it changes: stale and frozen are found by time."""
        while True:
            now = self.clock()
            for meter_id in self.config:
                health = self.board.health(meter_id, now)
                before = self._health.get(meter_id, MeterHealth.STARTING)
                if health is not before and health in (MeterHealth.STALE, MeterHealth.FROZEN):
                    log.warning(f"meter.{health.value}", meter=meter_id, age_s=self._age(meter_id))
                elif health is MeterHealth.OK and before in (MeterHealth.STALE, MeterHealth.FROZEN):
                    log.info("meter.fresh", meter=meter_id)
                self._health[meter_id] = health
            if self.metrics is not None:
                self._export(meter_id, health, now)
            await asyncio.sleep(WATCH_S)

    def _export(self, meter_id: str, health: MeterHealth, now: datetime) -> None:
        assert self.metrics is not None
        t = self.board.tracks[meter_id]
        labels = (meter_id, t.role)
        self.metrics.meter_up.labels(*labels).set(float(health is MeterHealth.OK))
        age = self.board.age_s(meter_id, now)
        if age is not None:
            self.metrics.meter_age.labels(*labels).set(age)
        self.metrics.meter_polls.labels(meter_id, "ok").set(t.polls)
        self.metrics.meter_polls.labels(meter_id, "failed").set(t.failures)
        if t.sample is not None and "power" in t.sample.values:
            self.metrics.meter_power.labels(*labels).set(t.sample.values["power"])

    def _age(self, meter_id: str) -> float | None:
        age = self.board.age_s(meter_id, self.clock())
        return None if age is None else round(age, 1)

    def to_json(self) -> list[dict[str, Any]]:
        """Every meter, in configuration order (DESIGN.md §4.6 shape plus health)."""
        now = self.clock()
        return [self._json(meter_id, now) for meter_id in self.config]

    def _json(self, meter_id: str, now: datetime) -> dict[str, Any]:
        data = self.board.to_json(meter_id, now)
        reader = self.readers[meter_id]
        m = self.config[meter_id]
        data["transport"] = m.transport
        data["bus"] = reader.bus.settings.name
        data["unit"] = m.unit
        data["poll_interval_s"] = m.interval_s
        if reader.model is not None:
            data["sunspec_model"] = reader.model
        return data

    async def read_now(self, meter_id: str) -> dict[str, Any]:
        """Read a meter once through its bus (in turn with its poller) and judge the values."""
        reader = self.readers.get(meter_id)
        if reader is None:
            raise KeyError(meter_id)
        m = self.config[meter_id]
        before = self.board.tracks[meter_id].sample
        started = asyncio.get_running_loop().time()
        from edge.modbus.bus import BusError
        from edge.modbus.poller import ReadFailed

        try:
            values = await reader.read_once()
        except (BusError, ReadFailed) as exc:
            raise DeviceError(meter_id, str(exc)) from None
        elapsed = asyncio.get_running_loop().time() - started
        check = Plausibility(
            role=m.role,
            phases=reader.profile.phases,
            max_current_a=reader.profile.max_current_a,
            previous_import_wh=before.values.get("import_wh") if before else None,
        )
        return {
            "id": meter_id,
            "role": m.role,
            "profile": m.profile,
            "read_ms": round(elapsed * 1000, 1),
            "requests": len(reader.reads),
            "values": values,
            "problems": implausible(values, check),
        }
