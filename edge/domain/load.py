"""What load balancing decides over: the site as one frozen snapshot, and its answer.

Currents are A per phase and signed (units.py): a setpoint above 0 charges, below 0
discharges. Grid phases are indexed 0, 1, 2 (L1, L2, L3 at the connection point); a
charger's own phases map onto them through its `rotation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Phases = tuple[float, float, float]
# Which grid phase a charger's L1, L2, L3 is wired to (config `phase_rotation`).
Rotation = tuple[int, int, int]
ROTATIONS: dict[str, Rotation] = {
    "L1L2L3": (0, 1, 2),
    "L2L3L1": (1, 2, 0),
    "L3L1L2": (2, 0, 1),
    "L1L3L2": (0, 2, 1),
    "L3L2L1": (2, 1, 0),
    "L2L1L3": (1, 0, 2),
}


class LimitReason(StrEnum):
    """Why a connector has the limit it has (shown by `edge stations`)."""

    FAIR_SHARE = "fair share"
    PRIORITY = "priority"
    CIRCUIT = "circuit cap"
    CLOUD = "cloud constraint"
    OPERATOR = "operator limit"
    FAILSAFE = "fail-safe"
    PAUSED = "min-current pause"
    STATION_MAX = "station max"
    DEMAND = "ev demand"
    IDLE = "idle"
    UNRESPONSIVE = "unresponsive"


@dataclass(frozen=True, slots=True)
class ConnectorLoad:
    """One connector as the allocator sees it."""

    station: str
    connector: int
    max_current_a: float
    phases: int = 3  # 1 or 3: how many of the charger's phases the car uses
    rotation: Rotation = (0, 1, 2)
    priority: int = 0
    active: bool = False  # a session runs on it
    responsive: bool = True  # connected and answering; else it keeps its last limit
    drawn_a: tuple[float | None, float | None, float | None] | None = None  # charger L1..L3
    # The most the car may be drawing per phase while `drawn_a` is not the whole truth (it
    # is following a new limit and has not reported since that it has); None: it is.
    draw_max_a: float | None = None
    limit_a: float | None = None  # the limit in force (None: never set by us)
    limit_since_s: float | None = None  # when that limit took effect
    running_since_s: float | None = None  # when it last went from paused to charging
    paused_since_s: float | None = None  # when it was last paused for lack of current
    cloud_limit_a: float | None = None  # a cloud charging profile's limit
    operator_limit_a: float | None = None  # `edge station ID limit A` while balancing
    min_current_a: float | None = None  # the charger's own minimum, if above the policy's
    circuit: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.station, self.connector

    def grid_phases(self) -> tuple[int, ...]:
        """The grid phases this connector draws from."""
        return self.rotation[: self.phases]


@dataclass(frozen=True, slots=True)
class Circuit:
    """A sub-feeder with its own limit; `parent` None means under the site main."""

    id: str
    limit_a: float
    parent: str | None = None
    metered: bool = False  # has a meter of its own
    import_a: Phases | None = None  # that meter's trusted reading (None: unknown or none)


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything one control cycle needs, taken at `now_s` (monotonic seconds)."""

    now_s: float
    grid_limit_a: float | None
    grid_import_a: Phases | None  # trusted grid meter reading; None = unknown load
    connectors: tuple[ConnectorLoad, ...]
    circuits: tuple[Circuit, ...] = ()
    # The non-EV load per node (the main or a metered circuit) the last cycle settled on.
    non_ev_prior_a: Mapping[str, Phases] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """The `[load]` settings the decisions follow."""

    margin_a: float = 2.0
    min_current_a: float = 6.0
    failsafe_current_a: float = 6.0
    strategy: str = "fair"  # "fair" | "priority"
    demand_headroom_a: float = 2.0  # a car using less gets what it draws plus this
    settle_s: float = 10.0  # time a car has to follow a new limit before its draw counts
    rotation_s: float = 900.0  # a paused session's turn comes after this long
    hysteresis_a: float = 1.0  # smaller increases are not sent
    dwell_s: float = 30.0  # increases wait this long after the last change
    step_a: float = 0.1  # limits are rounded down to this (OCPP 1.6 multipleOf 0.1)


@dataclass(frozen=True, slots=True)
class Setpoint:
    """The limit one connector should have (A per phase, signed) and why."""

    station: str
    connector: int
    limit_a: float
    reason: LimitReason

    @property
    def key(self) -> tuple[str, int]:
        return self.station, self.connector


@dataclass(frozen=True, slots=True)
class Allocation:
    """The allocator's answer for one cycle."""

    setpoints: tuple[Setpoint, ...]
    failsafe: bool  # some load is unknown: the fail-safe level applies
    available_a: Phases | None  # current the EVs may use per grid phase (None: no limit)
    ev_allocated_a: Phases  # what the setpoints add up to per grid phase
    non_ev_a: Mapping[str, Phases] = field(default_factory=dict)  # per node, as used

    def by_key(self) -> dict[tuple[str, int], Setpoint]:
        return {s.key: s for s in self.setpoints}
