"""The site as the OCPP handlers see it: commit to the store, then update the live state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from edge.config import Config
from edge.domain.auth import AuthEntry, AuthPolicy, decide
from edge.domain.events import Event, Recorded
from edge.state.registry import Registry
from edge.store import auth as auth_store
from edge.store.writer import Store

log = structlog.get_logger("edge.site")


def utc_now() -> datetime:
    """The wall clock in UTC."""
    return datetime.now(UTC)


class SiteService:
    """Implements `edge.ocpp.site.Site` over the store and the registry."""

    def __init__(
        self,
        config: Config,
        store: Store,
        registry: Registry,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.clock = clock
        self.heartbeat_interval = config.ocpp.heartbeat_interval
        self.local_tags = 0  # size of the local authorization list, kept current
        # called with each committed event (e.g. the load controller watches boots)
        self.listeners: list[Callable[[Event, Recorded], None]] = []

    def now(self) -> datetime:
        """The gateway clock."""
        return self.clock()

    def boot_status(self, station_id: str) -> str:
        """Configured stations are Accepted; others per `[ocpp] unknown_station_boot`."""
        if self.config.station(station_id) is not None:
            return "Accepted"
        return self.config.ocpp.unknown_station_boot.capitalize()

    def touch(self, station_id: str) -> None:
        """A heartbeat: the station is alive."""
        self.registry.station(station_id).last_seen = self.clock()

    async def record(self, event: Event) -> Recorded:
        """Commit first (DESIGN.md §2), then show it in the live state."""
        recorded = await self.store.record(event)
        self.registry.apply(event, recorded)
        for listener in self.listeners:
            listener(event, recorded)
        return recorded

    def policy(self) -> AuthPolicy:
        """An open site accepts every tag: no local list and no cloud (DESIGN.md §4.2)."""
        open_site = self.local_tags == 0 and self.config.uplink.mode == "none"
        return AuthPolicy(
            open_site=open_site, accept_unknown=self.config.auth.unknown_tags == "accept"
        )

    async def authorize(self, station_id: str, id_tag: str) -> AuthEntry:
        """Local list, then cache, then the unknown-tag policy."""
        local, cached = await self.store.read(lambda c: auth_store.get_auth(c, id_tag))
        entry = decide(id_tag, local, cached, self.policy(), self.clock())
        log.info("auth.decided", station=station_id, id_tag=id_tag, status=entry.status.value)
        return entry

    async def refresh_tag_count(self) -> None:
        """Recount the local list (after a change or at start-up)."""
        self.local_tags = len(await self.store.read(auth_store.list_tags))
