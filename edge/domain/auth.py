"""Authorization of idTags / idTokens against the local list and the cache."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AuthStatus(StrEnum):
    """OCPP 1.6 AuthorizationStatus; 2.x AuthorizationStatusEnumType shares these values."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """A local-list or cache entry."""

    id_tag: str
    status: AuthStatus
    expiry: datetime | None = None
    parent_id_tag: str | None = None

    def effective(self, now: datetime) -> AuthStatus:
        """The status at `now`: an Accepted entry past its expiry is Expired."""
        if self.status is AuthStatus.ACCEPTED and self.expiry is not None and self.expiry <= now:
            return AuthStatus.EXPIRED
        return self.status


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """`open_site`: no tags configured and no uplink, so every tag is accepted
    (DESIGN.md §4.2); otherwise unknown tags follow `accept_unknown`."""

    open_site: bool
    accept_unknown: bool


def decide(
    id_tag: str,
    local: AuthEntry | None,
    cached: AuthEntry | None,
    policy: AuthPolicy,
    now: datetime,
) -> AuthEntry:
    """Decide one tag: the local list wins, then the cache, then the unknown-tag policy."""
    if local is not None:
        return AuthEntry(id_tag, local.effective(now), local.expiry, local.parent_id_tag)
    if cached is not None and cached.effective(now) is not AuthStatus.EXPIRED:
        return AuthEntry(id_tag, cached.status, cached.expiry, cached.parent_id_tag)
    if policy.open_site or policy.accept_unknown:
        return AuthEntry(id_tag, AuthStatus.ACCEPTED)
    return AuthEntry(id_tag, AuthStatus.INVALID)
