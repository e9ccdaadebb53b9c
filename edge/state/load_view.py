"""The site as load balancing sees it: registry + meters + what the controller remembers,
folded into one frozen `SiteSnapshot`; pure (no clock: the caller passes the time)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from edge.domain.load import Circuit, ConnectorLoad, Phases, Rotation
from edge.domain.units import fresh
from edge.state.registry import Registry, StationState

Key = tuple[str, int]

# How long a car may take to follow a new limit: IEC 61851-1 Annex A gives the EV 5 s to
# answer a changed PWM duty cycle, and the charger takes a moment to apply the profile.
FOLLOW_S = 6.0
# A report within this of the new limit shows the car has followed it.
FOLLOWED_A = 1.0


@dataclass(frozen=True, slots=True)
class StationSetting:
    """A station's `[[stations]]` entry as far as load balancing cares."""

    max_current_a: float = 32.0
    phases: int = 3
    rotation: Rotation = (0, 1, 2)
    priority: int = 0
    circuit: str | None = None
    min_current_a: float | None = None  # from its charger profile


@dataclass(slots=True)
class ConnectorMemory:
    """What the controller knows of one connector beyond the registry."""

    limit_a: float | None = None  # the limit the charger accepted last
    since_s: float | None = None  # when (monotonic)
    pending_a: float | None = None  # a limit being written now
    planned_a: float | None = None  # the allocator's last answer
    reason: str | None = None
    in_force_reason: str | None = None  # why the limit in force was set
    running_since_s: float | None = None
    paused_since_s: float | None = None
    written_s: float | None = None  # when its profile was last written (fall-back refresh)
    cloud_limit_a: float | None = None
    operator_limit_a: float | None = None
    previous_a: float | None = None  # the limit before the one in force
    lowered_from_a: float | None = None  # the highest limit before the last reduction(s)
    lowered_s: float | None = None  # when the last reduction was accepted

    def held_a(self) -> float | None:
        """The most the connector may be drawing: a pending increase may already apply."""
        if self.pending_a is None:
            return self.limit_a
        return self.pending_a if self.limit_a is None else max(self.limit_a, self.pending_a)

    def changed(self, previous_a: float | None, now_s: float) -> None:
        """The charger accepted a new limit; `previous_a` is the one it had."""
        self.previous_a = previous_a
        if previous_a is None or self.limit_a is None or self.limit_a >= previous_a:
            return
        if self.lowered_s is not None and now_s - self.lowered_s < FOLLOW_S:
            previous_a = max(previous_a, self.lowered_from_a or 0.0)
        self.lowered_from_a, self.lowered_s = previous_a, now_s

    def following(self, now_s: float) -> bool:
        """Whether the car may still be on its way to its limit (written or accepted
        less than `FOLLOW_S` ago)."""
        if self.pending_a is not None:
            return True
        return self.since_s is not None and now_s - self.since_s < FOLLOW_S

    def followed(self, report_s: float, reported_a: float) -> bool:
        """Whether a report taken at `report_s` shows the car at its new limit already:
        at or under it after a reduction, at or over it after an increase."""
        if self.since_s is None or self.limit_a is None or report_s < self.since_s:
            return False
        if self.previous_a is not None and self.limit_a < self.previous_a:
            return reported_a <= self.limit_a + FOLLOWED_A
        return reported_a >= self.limit_a - FOLLOWED_A

    def draw_max_a(self, now_s: float) -> float | None:
        """The most the car may be drawing while it follows: its limit (or the one being
        written), and within `FOLLOW_S` of a reduction the limit before it."""
        held = self.held_a()
        if self.lowered_s is None or now_s - self.lowered_s >= FOLLOW_S:
            return held
        return max(held or 0.0, self.lowered_from_a or 0.0)

    def unsettled_max_a(
        self, now_s: float, report: tuple[float, float] | None, max_current_a: float
    ) -> float | None:
        """The most an active car may be drawing while what it draws is not known, None
        once it is: it is not following a new limit, or `report` ((when, amps) of a
        report the meter has been read since) shows it has followed.

        While it follows, the meter and its reports disagree: after a reduction the meter
        still sees the old draw for a while, after an increase it sees the new one before
        the charger reports it. The allocator then keeps the non-EV load where it was
        unless the meter rules that out (edge/control/allocator.py `_non_ev`). Taken as
        building load, a reduction fed on itself (each accepted limit woke a cycle on the
        same meter reading, which reduced again: one step of the building paused every
        session within milliseconds) and an increase undid itself (every session went on
        and off at the pace of `dwell_s`).
        """
        if not self.following(now_s):
            return None
        if report is not None and self.pending_a is None and self.followed(*report):
            return None
        most = self.draw_max_a(now_s)
        return max_current_a if most is None else most


def connectors_of(st: StationState) -> list[int]:
    """The connector (1.6) or EVSE (2.x) ids a station reported, 1 if none yet."""
    return sorted(c for c in st.connectors if c > 0) or [1]


def connector_loads(
    registry: Registry,
    settings: Mapping[str, StationSetting],
    memory: Mapping[Key, ConnectorMemory],
    responsive: Callable[[StationState], bool],
    now: datetime,
    now_s: float,
    report_max_age_s: float,
    metered_at: datetime | None = None,
    default: StationSetting = StationSetting(),
) -> tuple[ConnectorLoad, ...]:
    """Every connector of every known station (`now` on the wall clock, `now_s` on the
    monotonic one the memory's times are on, `metered_at` when the oldest meter reading
    the cycle uses was taken)."""
    loads: list[ConnectorLoad] = []
    for st in registry.stations.values():
        setting = settings.get(st.id, default)
        active = {s.connector for s in registry.active_sessions(st.id)}
        ok = responsive(st)
        for cid in connectors_of(st):
            m = memory.get((st.id, cid), ConnectorMemory())
            drawn = _drawn(st, cid, active, m, now, report_max_age_s)
            most = None
            if cid in active:
                report = _report(st, drawn, now, now_s, metered_at)
                most = m.unsettled_max_a(now_s, report, setting.max_current_a)
            loads.append(
                ConnectorLoad(
                    st.id,
                    cid,
                    setting.max_current_a,
                    setting.phases,
                    setting.rotation,
                    setting.priority,
                    active=cid in active,
                    responsive=ok,
                    drawn_a=drawn,
                    draw_max_a=most,
                    limit_a=m.held_a(),
                    limit_since_s=m.since_s,
                    running_since_s=m.running_since_s,
                    paused_since_s=m.paused_since_s,
                    cloud_limit_a=m.cloud_limit_a,
                    operator_limit_a=m.operator_limit_a,
                    min_current_a=setting.min_current_a,
                    circuit=setting.circuit,
                )
            )
    return tuple(loads)


def _report(
    st: StationState,
    drawn: tuple[float | None, float | None, float | None] | None,
    now: datetime,
    now_s: float,
    metered_at: datetime | None,
) -> tuple[float, float] | None:
    """The station's report as (monotonic time, most amps of a phase), if the meter has
    been read since it: before that, the meter may not show yet what the report shows."""
    if drawn is None or st.current_at is None or metered_at is None:
        return None
    if metered_at < st.current_at:
        return None
    report_s = now_s - (now - st.current_at).total_seconds()
    return report_s, max((v for v in drawn if v is not None), default=0.0)


def _drawn(
    st: StationState,
    cid: int,
    active: set[int],
    m: ConnectorMemory,
    now: datetime,
    max_age_s: float,
) -> tuple[float | None, float | None, float | None] | None:
    """What the connector's car draws as far as it is safe to subtract from the import.

    Only a fresh report counts (an old one may overstate a car that has since slowed,
    and so understate the non-EV load); a station reports per station, so the value is
    the connector's only when one session runs; and a car cannot draw more than its
    limit for long, so the report is capped there. Anything left out stays in the
    non-EV part: the safe side.
    """
    drawn = st.phase_current_a
    if drawn is None or active != {cid} or st.current_at is None:
        return None
    if not fresh((now - st.current_at).total_seconds(), max_age_s):
        return None
    cap = m.held_a()
    if cap is None:
        return drawn
    return (
        None if drawn[0] is None else min(drawn[0], cap),
        None if drawn[1] is None else min(drawn[1], cap),
        None if drawn[2] is None else min(drawn[2], cap),
    )


def phase_sum(loads: tuple[ConnectorLoad, ...], base: Phases) -> Phases:
    """`base` plus what the connectors report drawing, per grid phase."""
    total = list(base)
    for c in loads:
        if c.drawn_a is None:
            continue
        for own, grid in enumerate(c.rotation[: c.phases]):
            value = c.drawn_a[own]
            if value is not None:
                total[grid] += max(value, 0.0)
    return total[0], total[1], total[2]


def circuits(
    specs: tuple[tuple[str, float, str | None, str | None], ...],
    reading: Callable[[str], Phases | None],
) -> tuple[Circuit, ...]:
    """Circuits from (id, limit, parent, meter id) with each meter's trusted reading."""
    return tuple(
        Circuit(cid, limit, parent, meter is not None, reading(meter) if meter else None)
        for cid, limit, parent, meter in specs
    )
