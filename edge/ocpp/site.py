"""What the OCPP handlers need from the rest of the gateway (implemented in service/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from edge.domain.auth import AuthEntry
from edge.domain.events import Event, Recorded, StationNotified


class Site(Protocol):
    """The port between protocol handlers and the store/state/auth of the site."""

    heartbeat_interval: int

    def now(self) -> datetime:
        """The gateway clock (UTC)."""
        ...

    def boot_status(self, station_id: str) -> str:
        """What a BootNotification of this station is answered: Accepted, Pending, Rejected."""
        ...

    def heartbeat(self, station_id: str) -> datetime:
        """Note that a station was heard from (Heartbeat) without journaling anything;
        returns the time to answer it with."""
        ...

    def time_for(self, station_id: str) -> datetime:
        """The time to give a station (BootNotification and Heartbeat answers)."""
        ...

    async def record(self, event: Event) -> Recorded:
        """Journal an event (returns after commit) and apply it to the live state."""
        ...

    async def authorize(self, station_id: str, id_tag: str) -> AuthEntry:
        """Decide an idTag / idToken for this station."""
        ...


def journal_only(
    site: Site, kind: str, action: str
) -> Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A handler for a notification that is journaled and answered with an empty payload."""

    async def handle(station: str, p: dict[str, Any]) -> dict[str, Any]:
        await site.record(StationNotified(station, site.now(), kind, action, p))
        return {}

    return handle
