"""Share the current the site may draw among its charging sessions; pure (DESIGN.md §3).

Every limit is a constraint per phase: the grid connection (`grid_limit_a - margin_a`
minus the non-EV load) and each circuit under it. Sessions are admitted in turn while
every constraint they load can still give each admitted one `min_current_a`; the rest
are paused (0 A), never given an illegal few amps. The admitted ones share by max-min
fair water-filling: every level rises together until a session reaches its own cap
(station max, cloud limit, what the car draws, fail-safe) or a constraint is full.
Under `strategy = "priority"` each priority group does this in turn, highest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edge.domain.load import (
    Allocation,
    ConnectorLoad,
    LimitReason,
    Phases,
    Policy,
    Setpoint,
    SiteSnapshot,
)

MAIN = "main"
EPS = 1e-6
# A constraint is one node (the main or a circuit) on one grid phase.
Constraint = tuple[str, int]


@dataclass(slots=True)
class _Node:
    """The main or a circuit: its limit and whether its load is known."""

    id: str
    limit_a: float | None  # None: the main of a site without a grid limit
    import_a: Phases | None  # measured import; None with `known` False is unknown load
    known: bool
    parent: str | None
    ev_a: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # reported EV draw
    ev_max_a: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # the most it may be


@dataclass(slots=True)
class _Claim:
    """An active session the allocator can give current to."""

    index: int  # of its connector in the snapshot
    load: ConnectorLoad
    cap_a: float
    cap_reason: LimitReason
    need_a: float  # its minimum current
    constraints: tuple[Constraint, ...]
    failsafe: bool


def allocate(snapshot: SiteSnapshot, policy: Policy) -> Allocation:
    """The limit of every connector in the snapshot for this cycle."""
    nodes = _nodes(snapshot)
    paths = [_path(nodes, c.circuit) for c in snapshot.connectors]
    for c, path in zip(snapshot.connectors, paths, strict=True):
        drawn = _drawn_per_phase(c)
        most = _draw_max_per_phase(c, drawn)
        for node_id in path:
            node = nodes[node_id]
            node.ev_a = [node.ev_a[p] + drawn[p] for p in range(3)]
            node.ev_max_a = [node.ev_max_a[p] + most[p] for p in range(3)]
    non_ev = _non_ev(nodes, snapshot.non_ev_prior_a)
    capacity = _capacity(nodes, non_ev, policy)
    available = _available(capacity)
    limited = {n for n, _ in capacity}
    setpoints: list[Setpoint | None] = [None] * len(snapshot.connectors)
    claims: list[_Claim] = []
    for i, c in enumerate(snapshot.connectors):
        path = paths[i]
        constraints = tuple((n, p) for n in path if n in limited for p in c.grid_phases())
        if not c.responsive:
            held = _held_a(c)
            setpoints[i] = Setpoint(c.station, c.connector, held, LimitReason.UNRESPONSIVE)
            for k in constraints:
                capacity[k] -= max(held, _drawn_max(c) or 0.0)
            continue
        if not c.active:
            # Under a limit an idle connector gets 0 A, so a car that plugs in draws
            # nothing until the next cycle has given it a share.
            free = not constraints and c.max_current_a >= _need(c, policy)
            idle, reason = (
                (c.max_current_a, LimitReason.STATION_MAX) if free else (0.0, LimitReason.IDLE)
            )
            setpoints[i] = Setpoint(c.station, c.connector, idle, reason)
            continue
        unknown = any(not nodes[n].known for n in path)
        claim = _claim(i, c, constraints, unknown, snapshot.now_s, policy)
        if claim.cap_a < claim.need_a - EPS:
            setpoints[i] = Setpoint(c.station, c.connector, 0.0, claim.cap_reason)
        else:
            claims.append(claim)
    for group in _groups(claims, policy):
        _share(group, capacity, snapshot.now_s, policy, setpoints)
    ordered = tuple(sp for sp in setpoints if sp is not None)
    return Allocation(
        setpoints=ordered,
        failsafe=any(not n.known for n in nodes.values() if n.limit_a is not None),
        available_a=available,
        ev_allocated_a=_per_phase(snapshot.connectors, ordered),
        non_ev_a=non_ev,
    )


# -- the tree of limits --------------------------------------------------------------------


def _nodes(snapshot: SiteSnapshot) -> dict[str, _Node]:
    nodes = {
        MAIN: _Node(
            MAIN,
            snapshot.grid_limit_a,
            snapshot.grid_import_a,
            known=snapshot.grid_limit_a is None or snapshot.grid_import_a is not None,
            parent=None,
        )
    }
    for circuit in snapshot.circuits:
        nodes[circuit.id] = _Node(
            circuit.id,
            circuit.limit_a,
            circuit.import_a,
            # Without a meter of its own a circuit carries only its chargers.
            known=not circuit.metered or circuit.import_a is not None,
            parent=circuit.parent or MAIN,
        )
    return nodes


def _path(nodes: dict[str, _Node], circuit: str | None) -> tuple[str, ...]:
    """The nodes a connector's current flows through, its own circuit first."""
    path: list[str] = []
    node_id: str | None = circuit if circuit in nodes else MAIN
    while node_id is not None and node_id not in path:
        path.append(node_id)
        node_id = nodes[node_id].parent
    return tuple(path)


def _non_ev(nodes: dict[str, _Node], prior: Mapping[str, Phases]) -> dict[str, Phases]:
    """The non-EV load per metered node and grid phase: its import minus what its EVs draw.

    Where every car's draw is known that is one number. While a car's draw is known
    only within bounds (it is following a new limit, or it does not report), the
    non-EV load is somewhere between import minus the most and import minus the least
    the cars may draw. It then stays where the last cycle put it, unless the meter
    proves it has moved out of those bounds; with no last value, the upper bound
    (the safe side). So a car ramping after our own change is not taken for the
    building: a reduction does not feed on itself, an increase does not undo itself.
    """
    out: dict[str, Phases] = {}
    for node in nodes.values():
        if node.limit_a is None or not node.known or node.import_a is None:
            continue
        last = prior.get(node.id)
        values = []
        for p in range(3):
            high = max(node.import_a[p] - node.ev_a[p], 0.0)
            low = max(node.import_a[p] - node.ev_max_a[p], 0.0)
            values.append(high if last is None else min(max(last[p], low), high))
        out[node.id] = (values[0], values[1], values[2])
    return out


def _capacity(
    nodes: dict[str, _Node], non_ev: dict[str, Phases], policy: Policy
) -> dict[Constraint, float]:
    """Current the EVs may use per node and grid phase: limit - margin - non-EV load.

    An EV that does not report counts as 0 A in the least the EVs draw, so its draw
    stays in the non-EV part unless the meter rules that out. An unknown load leaves
    the whole limit to the static share, with every session under it capped at the
    fail-safe current.
    """
    capacity: dict[Constraint, float] = {}
    for node in nodes.values():
        if node.limit_a is None:
            continue
        used = non_ev.get(node.id)
        for p in range(3):
            capacity[(node.id, p)] = node.limit_a - policy.margin_a - (used[p] if used else 0.0)
    return capacity


def _available(capacity: dict[Constraint, float]) -> Phases | None:
    """What the EVs may use per grid phase at the main, before anyone is served."""
    if (MAIN, 0) not in capacity:
        return None
    return capacity[(MAIN, 0)], capacity[(MAIN, 1)], capacity[(MAIN, 2)]


def _drawn_per_phase(c: ConnectorLoad) -> list[float]:
    """What the connector reports drawing per grid phase (0 where not reported)."""
    total = [0.0, 0.0, 0.0]
    if c.drawn_a is None:
        return total
    for own, grid in enumerate(c.rotation[: c.phases]):
        value = c.drawn_a[own]
        if value is not None:
            total[grid] += max(value, 0.0)
    return total


def _draw_max_per_phase(c: ConnectorLoad, drawn: list[float]) -> list[float]:
    """The most the connector may be drawing per grid phase: what it reports where that
    is the whole truth, else up to `draw_max_a` on each phase it uses."""
    if c.draw_max_a is None or not c.active:
        return drawn
    most = list(drawn)
    for grid in c.grid_phases():
        most[grid] = max(most[grid], c.draw_max_a)
    return most


def _drawn_max(c: ConnectorLoad) -> float | None:
    if c.drawn_a is None:
        return None
    found = [d for d in c.drawn_a[: c.phases] if d is not None]
    return max(found) if found else None


def _held_a(c: ConnectorLoad) -> float:
    """An unresponsive connector is taken to draw its last limit (its max if none)."""
    if c.limit_a is not None:
        return c.limit_a
    return c.max_current_a if c.active else 0.0


# -- sessions ------------------------------------------------------------------------------


def _claim(
    index: int,
    c: ConnectorLoad,
    constraints: tuple[Constraint, ...],
    unknown: bool,
    now_s: float,
    policy: Policy,
) -> _Claim:
    cap, reason = c.max_current_a, LimitReason.STATION_MAX
    if c.operator_limit_a is not None and c.operator_limit_a < cap:
        cap, reason = max(c.operator_limit_a, 0.0), LimitReason.OPERATOR
    if c.cloud_limit_a is not None and c.cloud_limit_a < cap:
        cap, reason = max(c.cloud_limit_a, 0.0), LimitReason.CLOUD
    if unknown and policy.failsafe_current_a < cap:
        cap, reason = policy.failsafe_current_a, LimitReason.FAILSAFE
    need = _need(c, policy)
    demand = _demand_cap(c, now_s, policy)
    if demand is not None and max(demand, need) < cap:
        cap, reason = max(demand, need), LimitReason.DEMAND
    return _Claim(index, c, cap, reason, need, constraints, unknown)


def _need(c: ConnectorLoad, policy: Policy) -> float:
    """The least current a session may be given other than 0 A."""
    return max(policy.min_current_a, c.min_current_a or 0.0, policy.step_a)


def _demand_cap(c: ConnectorLoad, now_s: float, policy: Policy) -> float | None:
    """A car drawing well under its limit for a while gets its draw plus some headroom;
    the rest goes to the others (it grows back by the headroom each time it uses it)."""
    drawn = _drawn_max(c)
    if drawn is None or c.limit_a is None or c.limit_since_s is None:
        return None
    if now_s - c.limit_since_s < policy.settle_s:
        return None
    wanted = max(drawn, 0.0) + policy.demand_headroom_a
    return wanted if wanted < c.limit_a else None


def _groups(claims: list[_Claim], policy: Policy) -> list[list[_Claim]]:
    if policy.strategy != "priority":
        return [claims]
    levels = sorted({c.load.priority for c in claims}, reverse=True)
    return [[c for c in claims if c.load.priority == level] for level in levels]


def _keep_rank(c: ConnectorLoad, now_s: float, rotation_s: float) -> tuple[int, float]:
    """Who keeps charging when not all can: higher ranks first.

    A session that started charging less than `rotation_s` ago keeps its turn; then the
    ones waiting, longest wait first; then those that have had their turn, shortest
    run first. So a paused session's turn comes after at most `rotation_s`.
    """
    running = c.running_since_s is not None and (
        c.paused_since_s is None or c.running_since_s >= c.paused_since_s
    )
    if running and c.running_since_s is not None:
        ran = now_s - c.running_since_s
        return (2 if ran < rotation_s else 0), -ran
    waited = now_s - c.paused_since_s if c.paused_since_s is not None else 0.0
    return 1, waited


def _share(
    group: list[_Claim],
    capacity: dict[Constraint, float],
    now_s: float,
    policy: Policy,
    setpoints: list[Setpoint | None],
) -> None:
    """Admit, water-fill and take what the group got out of `capacity`."""
    ranked = sorted(
        group,
        key=lambda c: (_keep_rank(c.load, now_s, policy.rotation_s), c.load.station, c.index),
        reverse=True,
    )
    admitted: list[_Claim] = []
    needs: dict[Constraint, float] = {}
    for claim in ranked:
        if all(needs.get(k, 0.0) + claim.need_a <= capacity[k] + EPS for k in claim.constraints):
            admitted.append(claim)
            for k in claim.constraints:
                needs[k] = needs.get(k, 0.0) + claim.need_a
        else:
            load = claim.load
            setpoints[claim.index] = Setpoint(load.station, load.connector, 0.0, LimitReason.PAUSED)
    for claim, (amps, binding) in _floored_shares(admitted, capacity):
        amps = _round_down(amps, policy.step_a)
        for k in claim.constraints:
            capacity[k] -= amps
        load = claim.load
        reason = _reason(claim, binding, amps, policy)
        setpoints[claim.index] = Setpoint(load.station, load.connector, amps, reason)


def _reason(claim: _Claim, binding: Constraint | None, amps: float, policy: Policy) -> LimitReason:
    if claim.failsafe:
        return LimitReason.FAILSAFE
    if binding is None:
        return claim.cap_reason
    if binding[0] != MAIN:
        return LimitReason.CIRCUIT
    return LimitReason.PRIORITY if policy.strategy == "priority" else LimitReason.FAIR_SHARE


def _floored_shares(
    claims: list[_Claim], capacity: dict[Constraint, float]
) -> list[tuple[_Claim, tuple[float, Constraint | None]]]:
    """Water-filling where each claim gets at least its own minimum.

    Admission made every minimum fit; when minimums differ (a charger that refuses less
    than 10 A next to others at 6 A), a claim the plain level leaves short is fixed at
    its minimum and the rest share again what is left.
    """
    room = dict(capacity)
    fixed: list[tuple[_Claim, tuple[float, Constraint | None]]] = []
    pending = claims
    while True:
        shares = _waterfill(pending, room)
        short = {i for i, (amps, _) in enumerate(shares) if amps < pending[i].need_a - EPS}
        if not short:
            return fixed + list(zip(pending, shares, strict=True))
        for i in short:
            fixed.append((pending[i], (pending[i].need_a, shares[i][1])))
            for k in pending[i].constraints:
                room[k] -= pending[i].need_a
        pending = [c for i, c in enumerate(pending) if i not in short]


def _waterfill(
    claims: list[_Claim], capacity: dict[Constraint, float]
) -> list[tuple[float, Constraint | None]]:
    """Max-min fair shares under per-claim caps and shared constraints.

    All unfrozen claims share one level that rises until the next event: the smallest
    cap among them (that claim freezes at its cap) or a constraint running full (every
    unfrozen claim on it freezes at the level). Each claim freezes once: O(n log n).
    """
    n = len(claims)
    result: list[tuple[float, Constraint | None]] = [(0.0, None)] * n
    users: dict[Constraint, list[int]] = {}
    for i, claim in enumerate(claims):
        for k in claim.constraints:
            users.setdefault(k, []).append(i)
    count = {k: len(v) for k, v in users.items()}
    used = dict.fromkeys(users, 0.0)  # current frozen claims take from each constraint
    frozen = [False] * n
    by_cap = sorted(range(n), key=lambda i: claims[i].cap_a)
    nxt = 0

    def freeze(i: int, amps: float, binding: Constraint | None) -> None:
        frozen[i] = True
        result[i] = (amps, binding)
        for k in claims[i].constraints:
            used[k] += amps
            count[k] -= 1

    while True:
        while nxt < n and frozen[by_cap[nxt]]:
            nxt += 1
        if nxt == n:
            return result
        full, level = None, math.inf
        for k, left in count.items():
            if left:
                at = (capacity[k] - used[k]) / left
                if at < level:
                    full, level = k, at
        cap = claims[by_cap[nxt]].cap_a
        if full is None or cap <= level:
            while nxt < n and (frozen[by_cap[nxt]] or claims[by_cap[nxt]].cap_a <= cap):
                if not frozen[by_cap[nxt]]:
                    freeze(by_cap[nxt], cap, None)
                nxt += 1
        else:
            for i in users[full]:
                if not frozen[i]:
                    freeze(i, max(level, 0.0), full)


def _round_down(amps: float, step: float) -> float:
    """Down to the step (a limit never rounds up past what was planned)."""
    return round(math.floor(amps / step + EPS) * step, 6)


def _per_phase(connectors: Iterable[ConnectorLoad], setpoints: tuple[Setpoint, ...]) -> Phases:
    total = [0.0, 0.0, 0.0]
    for c, sp in zip(connectors, setpoints, strict=True):
        if c.active or not c.responsive:
            for p in c.grid_phases():
                total[p] += sp.limit_a
    return round(total[0], 3), round(total[1], 3), round(total[2], 3)
