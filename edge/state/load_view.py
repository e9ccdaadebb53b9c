"""The site as load balancing sees it: registry + meters + what the controller remembers,
folded into one frozen `SiteSnapshot`; pure (no clock: the caller passes the time)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from edge.domain.load import Circuit, ConnectorLoad, Phases, Rotation
from edge.state.registry import Registry, StationState

Key = tuple[str, int]


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

    def held_a(self) -> float | None:
        """The most the connector may be drawing: a pending increase may already apply."""
        if self.pending_a is None:
            return self.limit_a
        return self.pending_a if self.limit_a is None else max(self.limit_a, self.pending_a)


def connectors_of(st: StationState) -> list[int]:
    """The connector (1.6) or EVSE (2.x) ids a station reported, 1 if none yet."""
    return sorted(c for c in st.connectors if c > 0) or [1]


def connector_loads(
    registry: Registry,
    settings: Mapping[str, StationSetting],
    memory: Mapping[Key, ConnectorMemory],
    responsive: Callable[[StationState], bool],
    now: datetime,
    report_max_age_s: float,
    default: StationSetting = StationSetting(),
) -> tuple[ConnectorLoad, ...]:
    """Every connector of every known station."""
    loads: list[ConnectorLoad] = []
    for st in registry.stations.values():
        setting = settings.get(st.id, default)
        active = {s.connector for s in registry.active_sessions(st.id)}
        ok = responsive(st)
        for cid in connectors_of(st):
            m = memory.get((st.id, cid), ConnectorMemory())
            drawn = _drawn(st, cid, active, m, now, report_max_age_s)
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
    if (now - st.current_at).total_seconds() > max_age_s:
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
