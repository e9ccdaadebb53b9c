"""Which proposed limits to send now, so that limits do not flap; pure.

Reductions go out at once: they are what keeps the site under its limit. Increases
wait `dwell_s` after the connector's last change and are only sent when they are worth
a profile (at least `hysteresis_a`, or resuming a paused session). Holding an increase
back is always safe: the connector then draws less than planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.domain.load import Policy, Setpoint

EPS = 1e-6


@dataclass(frozen=True, slots=True)
class InForce:
    """The limit a connector has now and since when (monotonic seconds)."""

    limit_a: float
    since_s: float
    idle: bool = False  # 0 A because no session ran (not a pause): a new one starts at once


def settle(
    proposed: Iterable[Setpoint],
    in_force: Mapping[tuple[str, int], InForce],
    now_s: float,
    policy: Policy,
) -> tuple[Setpoint, ...]:
    """The setpoints to send this cycle."""
    return tuple(sp for sp in proposed if _send(sp, in_force.get(sp.key), now_s, policy))


def _send(sp: Setpoint, current: InForce | None, now_s: float, policy: Policy) -> bool:
    if current is None:
        return True  # never set by us: whatever the charger has is unknown
    if sp.limit_a < current.limit_a - EPS:
        return True
    if sp.limit_a <= current.limit_a + EPS:
        return False
    if current.idle:
        return True  # a new session gets its share at once
    if now_s - current.since_s < policy.dwell_s:
        return False
    resuming = current.limit_a <= EPS
    return resuming or sp.limit_a - current.limit_a >= policy.hysteresis_a - EPS
