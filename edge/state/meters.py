"""The live view of the site meters: the latest reading of each and how far to trust it.

Pure: the pollers hand in samples and failures, the caller passes the time. A stale or
frozen meter is unknown load (DESIGN.md §3); `trusted` is the signal the control layer
acts on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.domain.site_meter import MeterHealth, SiteMeterSample
from edge.domain.units import fresh, iso_utc

FROZEN_POLLS = 10  # identical complete readings in a row before "frozen" is considered
FROZEN_AFTER_S = 120.0  # identical for this long is frozen even with no EV to compare
EV_STEP_A = 2.0  # EVs' reported current moved this much while the meter stood still


@dataclass(slots=True)
class MeterTrack:
    """What the board knows of one meter."""

    id: str
    role: str
    profile: str
    sample: SiteMeterSample | None = None
    last_error: str | None = None
    failing_since: datetime | None = None
    repeats: int = 0  # consecutive polls whose values equal the previous poll's
    repeat_since: datetime | None = None
    ev_ref_a: float | None = None  # EV current when the meter last changed
    ev_moved: bool = False
    polls: int = 0
    failures: int = 0

    @property
    def frozen(self) -> bool:
        """Same values over many polls while the site's EV load moved, or for too long."""
        if self.repeats < FROZEN_POLLS or self.sample is None or self.repeat_since is None:
            return False
        lasting = (self.sample.taken_at - self.repeat_since).total_seconds()
        return self.ev_moved or lasting >= FROZEN_AFTER_S


class MeterBoard:
    """Every configured meter by id."""

    def __init__(self, meters: Iterable[tuple[str, str, str]], stale_after_s: float) -> None:
        self.tracks = {mid: MeterTrack(mid, role, profile) for mid, role, profile in meters}
        self.stale_after_s = stale_after_s

    def sample(self, s: SiteMeterSample, ev_current_a: float | None = None) -> None:
        """A complete reading arrived; `ev_current_a` is what the EVs drew at that time."""
        t = self.tracks[s.meter_id]
        previous = t.sample
        if previous is not None and previous.values == s.values:
            if t.repeats == 0:
                t.repeat_since = previous.taken_at
            t.repeats += 1
            if ev_current_a is not None and t.ev_ref_a is not None:
                t.ev_moved = t.ev_moved or abs(ev_current_a - t.ev_ref_a) >= EV_STEP_A
        else:
            t.repeats, t.repeat_since, t.ev_moved = 0, None, False
            t.ev_ref_a = ev_current_a
        t.sample = s
        t.failing_since = None
        t.polls += 1

    def failed(self, meter_id: str, error: str, at: datetime) -> None:
        """A poll failed."""
        t = self.tracks[meter_id]
        t.last_error = error
        if t.failing_since is None:
            t.failing_since = at
        t.failures += 1

    def age_s(self, meter_id: str, now: datetime) -> float | None:
        """Seconds since the last good reading (None: never read)."""
        sample = self.tracks[meter_id].sample
        return None if sample is None else (now - sample.taken_at).total_seconds()

    def health(self, meter_id: str, now: datetime) -> MeterHealth:
        """ok, stale, frozen, failing, or starting (no reading and no error yet)."""
        t = self.tracks[meter_id]
        age = self.age_s(meter_id, now)
        if t.failing_since is not None:
            return MeterHealth.FAILING
        if age is None:
            return MeterHealth.STARTING
        if not fresh(age, self.stale_after_s):
            return MeterHealth.STALE
        if t.frozen:
            return MeterHealth.FROZEN
        return MeterHealth.OK

    def trusted(self, meter_id: str, now: datetime) -> SiteMeterSample | None:
        """The reading the control layer may use: fresh and not frozen, else None
        (unknown load). A failed poll leaves a fresh reading usable until it is stale."""
        t = self.tracks[meter_id]
        age = self.age_s(meter_id, now)
        if t.sample is None or age is None or not fresh(age, self.stale_after_s) or t.frozen:
            return None
        return t.sample

    def by_role(self, role: str) -> list[str]:
        """Ids of the meters of a role, in configuration order."""
        return [t.id for t in self.tracks.values() if t.role == role]

    def to_json(self, meter_id: str, now: datetime) -> dict[str, Any]:
        """The DESIGN.md §4.6 meter shape, plus health, error and every value read."""
        t = self.tracks[meter_id]
        health = self.health(meter_id, now)
        values = dict(t.sample.values) if t.sample else {}
        age = self.age_s(meter_id, now)
        return {
            "id": t.id,
            "role": t.role,
            "profile": t.profile,
            "ok": health is MeterHealth.OK,
            "status": health.value,
            "age_s": None if age is None else round(age, 1),
            "taken_at": iso_utc(t.sample.taken_at) if t.sample else None,
            "power_w": values.get("power"),
            "current_a": [values.get(f"current_{p}") for p in ("l1", "l2", "l3")],
            "voltage_v": [values.get(f"voltage_{p}") for p in ("l1", "l2", "l3")],
            "power_phases_w": [values.get(f"power_{p}") for p in ("l1", "l2", "l3")],
            "frequency_hz": values.get("frequency"),
            "import_wh": values.get("import_wh"),
            "export_wh": values.get("export_wh"),
            "last_error": t.last_error,
            "failing_since": iso_utc(t.failing_since) if t.failing_since else None,
            "polls": t.polls,
            "failures": t.failures,
            "values": values,
        }
