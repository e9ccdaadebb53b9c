"""Pollers: read a meter on its interval and hand each complete reading on.

A poller never blocks the OCPP side: it awaits its bus and nothing else, and a slow or
dead meter costs its own task time only. Outages are logged once when they begin and
once when they end (STYLE.md practice 10).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from edge.domain.site_meter import SiteMeterSample
from edge.modbus.bus import Bus, BusError
from edge.modbus.plan import Image, Read, decode_all, plan_reads, spans
from edge.modbus.profile import MeterProfile, Quantity
from edge.modbus.sunspec import NotSunSpec, discover

log = structlog.get_logger("edge.modbus")


def utc_now() -> datetime:
    """The wall clock in UTC."""
    return datetime.now(UTC)


class ReadFailed(Exception):
    """A poll produced no usable reading; the message says why."""


class MeterReader:
    """Reads one meter (a unit id on a bus) through its profile's plan."""

    def __init__(self, meter_id: str, profile: MeterProfile, bus: Bus, unit: int) -> None:
        self.meter_id = meter_id
        self.profile = profile
        self.bus = bus
        self.unit = unit
        self.model: int | None = None  # the SunSpec model found
        self._quantities: tuple[Quantity, ...] | None = None
        self._reads: list[Read] = []
        if not profile.discovers:
            self._use(profile.quantities)

    def _use(self, quantities: tuple[Quantity, ...]) -> None:
        self._quantities = quantities
        p = self.profile
        self._reads = plan_reads(spans(quantities), p.max_registers, p.max_gap)

    @property
    def reads(self) -> list[Read]:
        """The requests one poll makes (empty until a SunSpec map is discovered)."""
        return list(self._reads)

    async def _read(self, function: int, address: int, count: int) -> list[int]:
        return await self.bus.read(function, address, count, self.unit)

    async def read_once(self) -> dict[str, float]:
        """One complete reading; raises BusError or ReadFailed."""
        if self._quantities is None:
            try:
                found = await discover(self.profile, self._read)
            except NotSunSpec as exc:
                raise ReadFailed(str(exc)) from None
            self.model = found.model
            self._use(found.quantities)
            log.info("meter.discovered", meter=self.meter_id, model=found.model, at=found.start)
        assert self._quantities is not None
        image = Image()
        for r in self._reads:
            image.add(r, await self._read(r.function, r.address, r.count))
        values = decode_all(self._quantities, image)
        if not values:
            raise ReadFailed("every register read says 'not available'")
        return values


class MeterPoller:
    """Polls one meter every `interval_s`; reports samples and failures by callback."""

    def __init__(
        self,
        reader: MeterReader,
        interval_s: float,
        on_sample: Callable[[SiteMeterSample], None],
        on_failure: Callable[[str, str, datetime], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.reader = reader
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.on_failure = on_failure
        self.clock = clock
        self.failing = False

    async def poll(self) -> SiteMeterSample | None:
        """One poll: a sample, or None after reporting the failure."""
        meter = self.reader.meter_id
        taken_at = self.clock()
        try:
            values = await self.reader.read_once()
        except (BusError, ReadFailed) as exc:
            error = str(exc)
            if not self.failing:
                self.failing = True
                log.warning("meter.failing", meter=meter, error=error)
            self.on_failure(meter, error, taken_at)
            return None
        if self.failing:
            self.failing = False
            log.info("meter.recovered", meter=meter)
        sample = SiteMeterSample(meter, taken_at, values)
        self.on_sample(sample)
        return sample

    async def run(self) -> None:
        """Poll until cancelled, on a fixed beat; a late poll skips the beats it missed."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.poll()
            except Exception:  # a defect in decoding must not end the poller
                log.exception("meter.poll_crashed", meter=self.reader.meter_id)
            due += self.interval_s
            now = loop.time()
            if due < now:
                due = now + self.interval_s - (now - due) % self.interval_s
            await asyncio.sleep(due - now)
