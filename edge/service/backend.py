"""What the local HTTP API reads and does (implements `edge.api.backend.Backend`)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.units import iso_utc, parse_local, parse_time
from edge.errors import BadCommand
from edge.metrics import Metrics
from edge.service import hostclock
from edge.service.commands import StationCommands
from edge.service.load import LoadController
from edge.service.meters import MeterService
from edge.service.site import SiteService
from edge.store import auth as auth_store
from edge.store import outbox, queries
from edge.uplink.ocpp_up import OcppUplink

if TYPE_CHECKING:
    from edge.uplink.mqtt import MqttUplink


class DaemonBackend:
    """Read models over the registry and the store; commands through `StationCommands`."""

    def __init__(
        self,
        site: SiteService,
        commands: StationCommands,
        metrics: Metrics,
        meters: MeterService | None = None,
        load: LoadController | None = None,
        uplink: MqttUplink | OcppUplink | None = None,
    ) -> None:
        self.site = site
        self.commands = commands
        self.metrics = metrics
        self.meter_service = meters
        self.load = load
        self.uplink_service = uplink
        self.started = time.monotonic()
        self.listening = False
        self.outbox: dict[str, Any] = {
            "backlog": 0,
            "oldest_age_s": None,
            "thinned": 0,
            "dead_letters": 0,
        }

    @property
    def config(self) -> Any:
        return self.site.config

    def status(self) -> dict[str, Any]:
        """DESIGN.md §4.6 status."""
        counts = self.site.registry.counts()
        load = self.config.load
        import_a, unknown = self._grid_import()
        return {
            "site": self.config.site.id,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "stations": {
                "known": counts["known"],
                "connected": counts["connected"],
                # handshakes refused lately, newest first: a wrong id, password or cert
                "refused": list(reversed(self.commands.server.refusals)),
            },
            "sessions": {"active": counts["active_sessions"]},
            "load": {
                "grid_limit_a": load.grid_limit_a,
                "import_a": import_a,
                "load_unknown": unknown,
                "ev_allocated_a": None,
                "failsafe": False,
                **(self.load.status() if self.load else {}),
            },
            "uplink": self.uplink(),
            "v2g": self.v2g(),
            "store": self.site.store.disk.to_json(),
            # whether the kernel says this controller's clock is synchronized (None: unknown)
            "clock_synchronized": hostclock.synchronized(),
        }

    def stations(self) -> list[dict[str, Any]]:
        """Every known station, configured first, by id."""
        states = sorted(
            self.site.registry.stations.values(), key=lambda s: (not s.configured, s.id)
        )
        return [s.to_json() for s in states]

    def station(self, station_id: str) -> dict[str, Any] | None:
        st = self.site.registry.stations.get(station_id)
        if st is None:
            return None
        data = st.to_json()
        data["sessions"] = [
            {"id": s.id, "connector": s.connector, "id_tag": s.id_tag}
            for s in self.site.registry.active_sessions(station_id)
        ]
        return data

    async def sessions(
        self,
        *,
        active: bool | None,
        limit: int,
        station: str | None,
        id_tag: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        bounds: dict[str, datetime] = {}
        for name, text in (("since", since), ("until", until)):
            if text:
                try:
                    bounds[name] = parse_local(text, self.config.site.timezone)
                except ValueError as exc:
                    raise BadCommand(f"{name}: {exc}") from None
        found = await self.site.store.read(
            lambda c: queries.list_sessions(
                c, active=active, limit=limit, station=station, id_tag=id_tag, **bounds
            )
        )
        return [s.to_json() for s in found]

    async def session(self, session_id: int) -> dict[str, Any] | None:
        found = await self.site.store.read(lambda c: queries.get_session(c, session_id))
        return found.to_json() if found else None

    async def station_command(
        self, station_id: str, command: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.commands.run(station_id, command, args)

    async def auth_tags(self) -> list[dict[str, Any]]:
        return await self.site.store.read(auth_store.list_tags)

    async def put_auth_tag(self, tag: dict[str, Any]) -> dict[str, Any]:
        entry = _auth_entry(tag)
        await self.site.store.write(lambda c: auth_store.put_tag(c, entry, "api"))
        await self.site.refresh_tag_count()
        return {
            "id_tag": entry.id_tag,
            "status": entry.status.value,
            "expiry": tag.get("expiry"),
            "parent_id_tag": entry.parent_id_tag,
        }

    async def delete_auth_tag(self, id_tag: str) -> bool:
        deleted = await self.site.store.write(lambda c: auth_store.delete_tag(c, id_tag))
        await self.site.refresh_tag_count()
        return bool(deleted)

    def meters(self) -> list[dict[str, Any]]:
        return self.meter_service.to_json() if self.meter_service else []

    async def read_meter(self, meter_id: str) -> dict[str, Any]:
        if self.meter_service is None:
            raise KeyError(meter_id)
        return await self.meter_service.read_now(meter_id)

    def _grid_import(self) -> tuple[list[float | None], bool]:
        """Per-phase import at the grid connection, and whether it is unknown (DESIGN.md §3:
        a stale or frozen meter, or none, counts as unknown load)."""
        service = self.meter_service
        grid = service.board.by_role("grid") if service else []
        if service is None or not grid:
            return [None, None, None], self.config.load.grid_limit_a is not None
        sample = service.board.trusted(grid[0], self.site.now())
        if sample is None:
            return [None, None, None], True
        return sample.phase_values("current"), False

    def uplink(self) -> dict[str, Any]:
        """DESIGN.md §4.6 uplink; the backlog figures are refreshed every few seconds."""
        live = self.uplink_service.status() if self.uplink_service else {}
        return {
            "mode": self.config.uplink.mode,
            "connected": live.get("connected", False),
            "backlog": self.outbox["backlog"],
            "oldest_age_s": self.outbox["oldest_age_s"],
            "thinned": self.outbox["thinned"],
            "dead_letters": self.outbox.get("dead_letters", 0),
            "delivered": live.get("delivered", 0),
            "last_error": live.get("last_error"),
            **{k: v for k, v in live.items() if k in ("broker", "stations")},
        }

    async def uplink_now(self) -> dict[str, Any]:
        """The uplink with the backlog counted now (status uses the periodic count)."""
        now = self.site.now()
        self.outbox = await self.site.store.read(lambda c: queries.outbox_stats(c, now))
        return self.uplink()

    def uplink_retry(self) -> dict[str, Any]:
        """Reconnect the uplink now."""
        if self.uplink_service is None:
            raise BadCommand(f"no uplink to retry (uplink.mode = {self.config.uplink.mode!r})")
        self.uplink_service.retry()
        return {"retrying": True}

    async def requeue_dead_letters(self) -> dict[str, Any]:
        """Give the records the cloud refused another go."""
        now = iso_utc(self.site.now())
        moved = await self.site.store.write(lambda c: outbox.requeue_dead_letters(c, now))
        if self.uplink_service is not None:
            self.uplink_service.wake()
            self.uplink_service.retry()
        return {"requeued": moved}

    def v2g(self) -> dict[str, Any]:
        return {"enabled": self.config.v2g.enabled, "sessions": []}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        details = {"ocpp_listening": self.listening, "store_open": self.site.store is not None}
        return all(details.values()), details

    def metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.render()


def _auth_entry(tag: dict[str, Any]) -> AuthEntry:
    id_tag = tag.get("id_tag")
    if not isinstance(id_tag, str) or not 1 <= len(id_tag) <= 36:
        raise BadCommand("id_tag: a string of 1 to 36 characters is required")
    try:
        status = AuthStatus(tag.get("status", "Accepted"))
    except ValueError:
        allowed = ", ".join(s.value for s in AuthStatus)
        raise BadCommand(f"status: must be one of {allowed}") from None
    expiry = tag.get("expiry")
    try:
        when = parse_time(expiry) if expiry else None
    except (TypeError, ValueError):
        raise BadCommand(f"expiry: not an ISO 8601 time: {expiry!r}") from None
    return AuthEntry(id_tag, status, when, tag.get("parent_id_tag"))
