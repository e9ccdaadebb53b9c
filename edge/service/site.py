"""The site as the OCPP handlers see it: commit to the store, then update the live state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from edge.config import Config
from edge.domain.auth import AuthEntry, AuthPolicy, AuthStatus, decide
from edge.domain.events import Event, Recorded, StationDisconnected
from edge.domain.units import parse_time
from edge.service import hostclock
from edge.state.registry import Registry, StationState, keeps_own_time
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
        # called with a station whose clock has just gone off (the daemon offers it the time)
        self.on_clock_off: Callable[[str], None] | None = None
        # this controller's clock as last seen by `watch_controller_clock`
        self._synchronized = hostclock.synchronized()
        # the cloud's say on a tag (OCPP uplink, DESIGN.md §4.5); None: it did not answer
        self.cloud_authorize: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None

    def now(self) -> datetime:
        """The gateway clock."""
        return self.clock()

    def boot_status(self, station_id: str) -> str:
        """Configured stations are Accepted; others per `[ocpp] unknown_station_boot`."""
        if self.config.station(station_id) is not None:
            return "Accepted"
        return self.config.ocpp.unknown_station_boot.capitalize()

    def heartbeat(self, station_id: str) -> datetime:
        """A heartbeat: the station is alive; the time its answer gives it (`time_for`)."""
        st = self.registry.station(station_id)
        now = st.last_seen = self.clock()
        given = self._time_at(st, now)
        if given == now:
            st.clock_set()  # it takes edge's time: what its clock said before is void
        return given

    def time_for(self, station_id: str) -> datetime:
        """The time to give a station in a BootNotification or Heartbeat answer
        (currentTime, OCPP 1.6 §4.2, §4.6; 2.0.1 B01, G02): this controller's clock, unless
        that clock is not synchronized and the station's is ahead of it.

        A controller without a synchronized clock (a Raspberry Pi after a power cut, with
        no NTP server reached) runs from the time it last saved: behind the true time,
        never ahead. A charger whose clock is ahead of it is then nearer the truth, and
        edge's time would set it back, with every session time after it. Such a charger
        is given its own time (edge's plus its offset) until this controller's clock is
        synchronized."""
        return self._time_at(self.registry.stations.get(station_id), self.clock())

    def watch_controller_clock(self) -> None:
        """Called now and then: once this controller's clock is synchronized at last (NTP
        reached), the chargers left ahead of it (`time_for`) are offered its time. Those
        that were right take the same time again; those that were wrong are set right."""
        synchronized = hostclock.synchronized()
        was, self._synchronized = self._synchronized, synchronized
        if not (was is False and synchronized is True):
            return
        kept = [
            st.id
            for st in self.registry.stations.values()
            if st.connected and keeps_own_time(st.clock_offset_s, was)
        ]
        log.info("ocpp.clock.synchronized", offering=kept)
        if self.on_clock_off is not None:
            for station in kept:
                self.on_clock_off(station)

    @staticmethod
    def _time_at(st: StationState | None, now: datetime) -> datetime:
        if st is not None and keeps_own_time(st.clock_offset_s, hostclock.synchronized()):
            assert st.clock_offset_s is not None
            return now + timedelta(seconds=st.clock_offset_s)
        return now

    async def record(self, event: Event) -> Recorded:
        """Commit first (DESIGN.md §2), then show it in the live state."""
        try:
            recorded = await self.store.record(event)
        except Exception:
            if isinstance(event, StationDisconnected):
                # The socket is gone whether or not the store could take it (a full disk):
                # the live state and the load balancer must not count on the station.
                self._show(event, Recorded())
            raise
        self._show(event, recorded)
        return recorded

    def _show(self, event: Event, recorded: Recorded) -> None:
        self.registry.apply(event, recorded)
        if self.registry.clock_changes:
            self._clock_changed()
        for listener in self.listeners:
            listener(event, recorded)

    def _clock_changed(self) -> None:
        for station in self.registry.clock_changes:
            st = self.registry.station(station)
            if st.clock_off:
                # Its session times are off by as much; BootNotification and Heartbeat give
                # it the time (OCPP 1.6 §4.2, §4.6), unless this controller's own clock is
                # not synchronized and behind the charger's (`time_for`).
                synchronized = hostclock.synchronized()
                offered = not keeps_own_time(st.clock_offset_s, synchronized)
                log.warning(
                    "ocpp.clock.off",
                    station=station,
                    offset_s=st.clock_offset_s,
                    controller_synchronized=synchronized,
                    time_offered=offered,
                )
                if offered and self.on_clock_off is not None:
                    self.on_clock_off(station)
            else:
                log.info("ocpp.clock.ok", station=station, offset_s=st.clock_offset_s)
        self.registry.clock_changes.clear()

    def policy(self) -> AuthPolicy:
        """An open site accepts every tag: no local list and no cloud (DESIGN.md §4.2)."""
        open_site = self.local_tags == 0 and self.config.uplink.mode == "none"
        return AuthPolicy(
            open_site=open_site, accept_unknown=self.config.auth.unknown_tags == "accept"
        )

    async def authorize(self, station_id: str, id_tag: str) -> AuthEntry:
        """The cloud when it answers in time (cached with an expiry); else the local list,
        then the cache, then the unknown-tag policy."""
        if self.cloud_authorize is not None:
            info = await self.cloud_authorize(station_id, id_tag)
            cloud = self._from_cloud(id_tag, info) if info else None
            if cloud is not None:
                now = self.clock()
                await self.store.write(lambda c: auth_store.cache_put(c, cloud, now))
                log.info(
                    "auth.decided",
                    station=station_id,
                    id_tag=id_tag,
                    by="cloud",
                    status=cloud.status.value,
                )
                return cloud
        local, cached = await self.store.read(lambda c: auth_store.get_auth(c, id_tag))
        entry = decide(id_tag, local, cached, self.policy(), self.clock())
        log.info("auth.decided", station=station_id, id_tag=id_tag, status=entry.status.value)
        return entry

    def _from_cloud(self, id_tag: str, info: dict[str, Any]) -> AuthEntry | None:
        try:
            status = AuthStatus(str(info.get("status")))
        except ValueError:
            return None  # 2.x statuses the cache cannot hold (e.g. NotAtThisLocation)
        expiry_text = info.get("expiryDate") or info.get("cacheExpiryDateTime")
        expiry = parse_time(expiry_text) if isinstance(expiry_text, str) else None
        if expiry is None and self.config.auth.cache_ttl_s:
            expiry = self.clock() + timedelta(seconds=self.config.auth.cache_ttl_s)
        parent = info.get("parentIdTag")
        return AuthEntry(id_tag, status, expiry, parent if isinstance(parent, str) else None)

    async def refresh_tag_count(self) -> None:
        """Recount the local list (after a change or at start-up)."""
        self.local_tags = len(await self.store.read(auth_store.list_tags))
