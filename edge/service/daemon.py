"""The daemon: config -> store, registry, OCPP endpoint, API; run until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge.config import Config
from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.events import Event, Recorded, StationDisconnected
from edge.domain.station import OcppVersion
from edge.domain.units import iso_utc
from edge.errors import EdgeError
from edge.logs import configure as configure_logging
from edge.metrics import Metrics
from edge.ocpp import charger_profile, charging, schemas
from edge.ocpp.server import OcppServer, ServerSettings
from edge.service.backend import DaemonBackend
from edge.service.commands import StationCommands
from edge.service.load import LoadController
from edge.service.load_writer import station_profile
from edge.service.meters import MeterService
from edge.service.site import SiteService, utc_now
from edge.state.registry import PROGRESS, Registry
from edge.store import auth as auth_store
from edge.store import journal, outbox, queries, retention
from edge.store.outbox import OutboxRecord
from edge.store.writer import Store
from edge.uplink.ocpp_up import OcppUplink, StationLink
from edge.uplink.ocpp_up import Store as UplinkStore

if TYPE_CHECKING:
    from edge.uplink.mqtt import MqttUplink

log = structlog.get_logger("edge.daemon")

HOUSEKEEPING_S = 2.0
# `edge run` exits with this (EX_TEMPFAIL) to be started again by systemd (Restart=on-failure)
EXIT_RESTART = 75
RESTART_AFTER_S = 1.0
PRUNE_EVERY_S = 6 * 3600.0
PRUNE_ROWS = 5000  # rows of a table deleted per transaction by retention
GC_THRESHOLDS = (20_000, 20, 20)  # young, middle, old (gc.set_threshold); see Daemon.start
# After charger connections closed, a full collection (Daemon._collect_closed): once this
# many closed, at most every COLLECT_SOON_S, else once COLLECT_CLOSED_S passed.
COLLECT_CLOSED = 100
COLLECT_SOON_S = 5.0
COLLECT_CLOSED_S = 60.0


def server_settings(config: Config) -> ServerSettings:
    """The OCPP endpoint's settings from `[ocpp]` and `[[stations]]`."""
    o = config.ocpp
    order = [OcppVersion.V21, OcppVersion.V201, OcppVersion.V16]
    wanted = {OcppVersion(v) for v in o.versions}
    return ServerSettings(
        host=o.host,
        port=o.port,
        path=o.path,
        versions=[v for v in order if v in wanted],
        security_profile=o.security_profile,
        tls_cert=str(o.tls_cert) if o.tls_cert else None,
        tls_key=str(o.tls_key) if o.tls_key else None,
        tls_ca=str(o.tls_ca) if o.tls_ca else None,
        allow_unknown=o.allow_unknown_stations,
        passwords={s.id: s.password for s in config.stations},
        certificate_cns={s.id: s.serial for s in config.stations if s.serial},
        cpo_name=o.cpo_name,
        call_timeout=o.call_timeout_s,
        ping_interval=o.ping_interval_s or None,
        max_frame_bytes=o.max_frame_bytes,
        compression=o.compression,
    )


class Daemon:
    """Owns every long-lived object; `start` and `stop` are each other's inverse."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.registry = Registry((s.id, s.bidirectional) for s in config.stations)
        self.store: Store | None = None
        self.server: OcppServer | None = None
        self.backend: DaemonBackend | None = None
        self.site: SiteService | None = None
        self.meters: MeterService | None = None
        self.load: LoadController | None = None
        self.uplink: MqttUplink | OcppUplink | None = None
        self.api_runner: object | None = None
        self.api_port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._tuned_gc = False
        self._offers: set[asyncio.Task[None]] = set()  # TriggerMessage(Heartbeat) in flight
        self._closed = 0  # charger connections closed since the last full collection
        # set by `serve`: how the daemon asks to be stopped, and the code `edge run` exits with
        self.request_stop: Callable[[], None] | None = None
        self.exit_code = 0
        self._collected = time.monotonic()

    async def start(self) -> None:
        """Open the store, restore state, listen for chargers and for the API."""
        from edge.api.server import bound_port, create_app, start_api

        path = Path(self.config.store.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = self.store = await Store.open(
            path,
            outbox_max_rows=self.config.store.outbox_max_rows,
            reserve_bytes=self.config.store.reserve_mb * 1024 * 1024,
        )
        self.metrics.watch_disk(store.disk)
        store.on_commit = self.metrics.on_commit
        store.on_damaged = functools.partial(
            asyncio.get_running_loop().call_soon_threadsafe, self._restart_for_check
        )
        await self._restore(store)
        site = self.site = SiteService(self.config, store, self.registry)
        await self._sync_config_tags(store)
        await site.refresh_tag_count()
        self.server = OcppServer(server_settings(self.config), site, self.metrics)
        self.server.keepalive_for = self._keepalive_for
        commands = StationCommands(self.server, self.registry, functools.partial(local_list, store))
        self.meters = MeterService(
            self.config, store, utc_now, self.registry.ev_current_a, metrics=self.metrics
        )
        self.load = LoadController(
            self.config,
            self.registry,
            self.meters.board,
            self.server,
            store,
            utc_now,
            metrics=self.metrics,
        )
        commands.load = self.load
        site.on_clock_off = functools.partial(self._offer_time, commands)
        site.listeners.append(self.load.on_event)
        site.listeners.append(self._count_closed)
        self.meters.listeners.append(self.load.on_meter)
        self.uplink = uplink_of(self.config, store, commands, self.registry, self.meters)
        if self.uplink is not None:
            site.listeners.append(self.uplink.wake)
        if isinstance(self.uplink, OcppUplink):
            site.cloud_authorize = self.uplink.authorize
            self.uplink.on_delivered = self.metrics.uplink_delivered.inc
        self.backend = DaemonBackend(
            site, commands, self.metrics, self.meters, self.load, self.uplink
        )
        app = create_app(self.backend, token=self.config.api.token)
        self.api_runner = runner = await start_api(app, self.config.api.listen)
        self.api_port = bound_port(runner)
        await self.server.start()
        self.backend.listening = True
        self.meters.start()
        self.load.start()
        if self.uplink is not None:
            self.uplink.start()
        # What start-up built lives as long as the daemon: keep it out of every full
        # collection, which would otherwise walk it and stall a control cycle.
        gc.collect()
        gc.freeze()
        # With Python's default (a young collection every 700 net allocations) a saturated
        # daemon with a thousand stations collected 80 times a second, and every two
        # seconds walked everything in a full collection of about 60 ms: a tenth of the
        # event loop's time. Most per-message objects die by reference count within a
        # round trip; a larger young generation lets them go before the collector ever
        # walks them. Cyclic garbage may wait that many allocations longer.
        _tune_gc()
        self._tuned_gc = True
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        every = watchdog_interval()
        if every is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(every), name="watchdog"))
        self._tasks.append(asyncio.create_task(warm_validators(), name="warm-validators"))
        log.info(
            "daemon.ready",
            site=self.config.site.id,
            ocpp_port=self.server.port,
            api_port=self.api_port,
            store=str(path),
        )

    async def _restore(self, store: Store) -> None:
        await store.write(journal.reset_connections)
        stations = await store.read(queries.list_stations)
        active = await store.read(queries.active_sessions)
        progress = await store.read(lambda c: queries.latest_progress(c, PROGRESS))
        self.registry.restore(stations, active, progress)
        log.info("daemon.restored", stations=len(stations), active_sessions=len(active))

    async def _sync_config_tags(self, store: Store) -> None:
        entries = [
            AuthEntry(t.id_tag, AuthStatus(t.status), t.expiry, t.parent_id_tag)
            for t in self.config.auth.tags
        ]
        await store.write(lambda c: auth_store.sync_config_tags(c, entries))

    async def _housekeeping(self) -> None:
        assert self.store is not None and self.backend is not None
        store, backend = self.store, self.backend
        next_prune = 0.0
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                await self._prune(store)
            self._collect_closed()
            if self.site is not None:
                self.site.watch_controller_clock()
            try:
                backend.outbox = await store.read(
                    functools.partial(queries.outbox_stats, now=utc_now())
                )
                self.metrics.uplink_backlog.set(backend.outbox["backlog"])
                self.metrics.uplink_oldest.set(backend.outbox["oldest_age_s"] or 0)
                self.metrics.uplink_connected.set(bool(self.uplink and self.uplink.connected))
            except Exception:
                log.exception("housekeeping.failed")
            await asyncio.sleep(HOUSEKEEPING_S)

    async def _watchdog(self, every: float) -> None:
        """Tell systemd we are alive (sd_watchdog_enabled(3)) while the event loop runs
        and the store's writer commits within `every`: a daemon stuck in either is
        restarted after WatchdogSec instead of leaving the chargers unanswered."""
        assert self.store is not None
        store = self.store
        while True:
            try:
                async with asyncio.timeout(every):
                    await store.write(_nothing)
            except Exception as exc:  # TimeoutError: the writer is stuck; else it failed
                log.error("daemon.watchdog.unhealthy", error=repr(exc), within_s=every)
            else:
                notify_systemd("WATCHDOG=1")
            await asyncio.sleep(every)

    def _restart_for_check(self) -> None:
        """A write found the database damaged: stop with EXIT_RESTART, so that systemd
        starts edge again and that start checks the file and sets it aside. Only where
        the daemon runs under `serve` (edge run); elsewhere the status says it."""
        if self.request_stop is None:
            return
        log.error(
            "daemon.restarting",
            reason="the database is damaged; the next start checks it and, if so, keeps it"
            " aside and starts a new one",
        )
        self.exit_code = EXIT_RESTART
        # after the answers to what the chargers sent meanwhile (a CALLERROR for what could
        # not be stored) have gone out: a charger left without one waits for its timeout
        asyncio.get_running_loop().call_later(RESTART_AFTER_S, self.request_stop)

    def _count_closed(self, event: Event, recorded: Recorded) -> None:
        if isinstance(event, StationDisconnected):
            self._closed += 1

    def _collect_closed(self) -> None:
        """A closed connection is a web of objects (socket, protocol, buffers, tasks) that
        only a full collection frees, about 12 KB each; with the young threshold raised,
        a thousand chargers reconnecting left that many until the next one, and the memory
        the process kept grew with every storm (12 MB per thousand). One full collection
        (tens of ms at a thousand stations) soon after many closed, or a while after a
        few did, frees them."""
        since = time.monotonic() - self._collected
        if (self._closed >= COLLECT_CLOSED and since >= COLLECT_SOON_S) or (
            self._closed and since >= COLLECT_CLOSED_S
        ):
            self._closed = 0
            self._collected = time.monotonic()
            gc.collect()

    async def _prune(self, store: Store) -> None:
        """Delete what is older than retention_days, PRUNE_ROWS rows of a table per
        transaction: the chargers' messages are committed between them, where one large
        DELETE (after retention_days was lowered, say) held every reply for seconds."""
        now = utc_now()
        before = now - timedelta(days=self.config.store.retention_days)
        total: dict[str, int] = {}
        chunks = 0
        while True:
            chunks += 1
            try:
                pruned = await store.write(
                    lambda c: retention.prune(c, before, now, limit=PRUNE_ROWS)
                )
            except Exception:
                log.exception("retention.failed")
                break
            for table, n in pruned.items():
                total[table] = total.get(table, 0) + n
            if max(pruned.values(), default=0) < PRUNE_ROWS:
                break
        if any(total.values()):
            log.info("retention.pruned", before=before.isoformat(), chunks=chunks, **total)

    def _keepalive_for(self, station: str) -> bool:
        """Whether a station gets websocket pings: its charger profile (configured, or
        matched by the vendor and model of its last boot) says."""
        try:
            profile = station_profile(self.config, self.registry, station)
        except charger_profile.ChargerProfileError:
            return True  # named in the log by the load writer, which reads it too
        if not profile.websocket_ping:
            log.info("ocpp.keepalive.off", station=station, profile=profile.name)
        return profile.websocket_ping

    def _offer_time(self, commands: StationCommands, station: str) -> None:
        """A charger's clock went off: have it send a Heartbeat, whose answer carries the
        time (OCPP 1.6 §4.6, §5.17 TriggerMessage; 2.0.1 F06, G02). Once per episode."""

        async def offer() -> None:
            try:
                result = await commands.run(station, "trigger", {"message": "Heartbeat"})
            except EdgeError as exc:
                log.warning("ocpp.clock.trigger_failed", station=station, error=str(exc))
                return
            log.info("ocpp.clock.time_offered", station=station, status=result["status"])

        task = asyncio.create_task(offer(), name=f"offer-time-{station}")
        self._offers.add(task)
        task.add_done_callback(self._offers.discard)

    async def stop(self) -> None:
        """Stop accepting, close chargers' sockets, drain the store; once."""
        if self._stopped:
            return
        self._stopped = True
        running = (*self._tasks, *self._offers)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.uplink is not None:
            await self.uplink.stop()
        if self.load is not None:
            await self.load.stop()
        if self.meters is not None:
            await self.meters.stop()
        if self.server is not None:
            await self.server.stop()
        if self.api_runner is not None:
            await self.api_runner.cleanup()  # type: ignore[attr-defined]
        if self.store is not None:
            await self.store.close()
        if self._tuned_gc:
            _untune_gc()
        log.info("daemon.stopped")


# The collector is the process's. The first daemon to start tunes it and the last to stop
# leaves it as it was found, for whatever runs on (a test, an embedding program).
_gc_saved = gc.get_threshold()
_gc_users = 0


def _tune_gc() -> None:
    global _gc_users, _gc_saved
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
    _gc_users += 1


def _untune_gc() -> None:
    global _gc_users
    _gc_users -= 1
    if _gc_users == 0:
        gc.unfreeze()
        gc.set_threshold(*_gc_saved)


HOT_ACTIONS = (
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "Authorize",
    "StartTransaction",
    "StopTransaction",
    "MeterValues",
    "TransactionEvent",
)


async def warm_validators() -> None:
    """Compile the hot schemas after ready (up to ~100 ms each), not on a charger's first
    message and not before the endpoint listens."""
    for version in OcppVersion:
        await asyncio.to_thread(schemas.warm, version, HOT_ACTIONS)


def uplink_of(
    config: Config,
    store: Store,
    commands: StationCommands,
    registry: Registry,
    meters: MeterService | None = None,
) -> MqttUplink | OcppUplink | None:
    """The uplink `[uplink] mode` names."""
    if config.uplink.mode == "ocpp":
        return ocpp_uplink(config, store, commands.server, registry, commands.load)
    m = config.uplink.mqtt
    if config.uplink.mode != "mqtt" or not m.host:
        return None
    # aiomqtt and paho are imported only by a site that uses them (start-up time).
    from edge.uplink.mqtt import BrokerSettings, MqttUplink, store_access

    settings = BrokerSettings(
        m.host,
        m.port,
        m.tls,
        m.username,
        m.password,
        m.prefix,
        m.qos,
        config.site.id,
        m.homeassistant,
        m.discovery_prefix,
    )

    def states() -> dict[str, dict[str, Any]]:
        # last_seen moves with every heartbeat; the retained state changes with its content
        return {
            sid: {k: v for k, v in st.to_json().items() if k != "last_seen"}
            for sid, st in registry.stations.items()
        }

    def meter_states() -> dict[str, dict[str, Any]]:
        if meters is None:
            return {}
        keep = ("id", "role", "ok", "status", "power_w", "current_a", "voltage_v")
        wanted = (*keep, "import_wh", "export_wh")
        return {meter["id"]: {k: meter.get(k) for k in wanted} for meter in meters.to_json()}

    read, ack = store_access(store)
    return MqttUplink(settings, read, ack, commands.run, states, meter_states)


def ocpp_uplink(
    config: Config,
    store: Store,
    server: OcppServer,
    registry: Registry,
    load: LoadController | None = None,
) -> OcppUplink | None:
    """Each station presented to the cloud CSMS as itself (DESIGN.md §4.5)."""
    o = config.uplink.ocpp
    if not o.url:
        return None

    def links() -> list[StationLink]:
        found = []
        for st in registry.stations.values():
            if st.ocpp_version is None or not st.identity.vendor:
                continue  # never booted here: nothing to present yet
            cfg = config.station(st.id)
            found.append(
                StationLink(
                    st.id,
                    st.ocpp_version.value,
                    functools.partial(_identity, st),
                    functools.partial(_connector_states, st),
                    cfg.uplink_password if cfg else None,
                )
            )
        return found

    async def forward(station: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        version = server.version_of(station)
        if load is not None and load.enabled and version is not None:
            # DESIGN.md §3: a cloud profile is a constraint; the charger gets min(cloud, local)
            cfg = config.station(station)
            if action == "SetChargingProfile":
                wanted = charging.profile_limit_a(version, payload, cfg.phases if cfg else 3)
                if wanted is not None:
                    load.set_cap("cloud", station, wanted[0], wanted[1])
                    return {"status": "Accepted"}
            if action == "ClearChargingProfile":
                load.set_cap("cloud", station, charging.cleared_connector(version, payload), None)
                return {"status": "Accepted"}
        return await server.call(station, action, payload)

    ssl_context = None
    if o.url.startswith("wss://"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=str(o.tls_ca) if o.tls_ca else None)
        if o.tls_cert and o.tls_key:
            ssl_context.load_cert_chain(str(o.tls_cert), str(o.tls_key))
    return OcppUplink(
        o.url, o.password, _uplink_store(store), forward, links, ssl_context, o.stop_on_invalid_id
    )


def _identity(st: Any) -> dict[str, str]:
    i = st.identity
    return {"vendor": i.vendor, "model": i.model, "firmware": i.firmware, "serial": i.serial}


def _connector_states(st: Any) -> dict[int, str]:
    return {cid: c.status for cid, c in st.connectors.items() if cid > 0}


def _uplink_store(store: Store) -> UplinkStore:
    async def pending(station: str, limit: int, after: int) -> list[OutboxRecord]:
        return await store.read(lambda c: outbox.pending_of(c, station, limit, after))

    async def ack(record_id: int) -> None:
        await store.write(lambda c: outbox.delivered(c, [record_id]))

    async def cloud_tx(session_id: int) -> int | None:
        return await store.read(lambda c: outbox.cloud_tx(c, session_id))

    async def map_tx(session_id: int, cloud: int, record_id: int) -> None:
        await store.write(lambda c: outbox.map_tx(c, session_id, cloud, record_id))

    async def local_session(cloud: int) -> int | None:
        return await store.read(lambda c: outbox.local_session(c, cloud))

    async def park(record: OutboxRecord, error: str) -> None:
        at = iso_utc(utc_now())
        await store.write(lambda c: outbox.park(c, record, error, at))

    return UplinkStore(pending, ack, cloud_tx, map_tx, local_session, park)


async def local_list(store: Store) -> tuple[int, list[dict[str, Any]]]:
    """The version and entries of the gateway's local authorization list."""

    def read(conn: Any) -> tuple[int, list[dict[str, Any]]]:
        return auth_store.local_list_version(conn), auth_store.list_tags(conn)

    return await store.read(read)


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(state.encode(), address)


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec for this process ($WATCHDOG_USEC), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.1)
    except ValueError:
        return None


def _nothing(conn: Any) -> None:
    """An empty write: it commits when the writer thread is alive and not stuck."""


async def serve(config: Config, stop: asyncio.Event | None = None) -> int:
    """Run the daemon until `stop` is set or SIGTERM/SIGINT arrives; the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    daemon = Daemon(config)
    daemon.request_stop = stop.set
    try:
        await daemon.start()
        notify_systemd("READY=1")
        await stop.wait()
        notify_systemd("STOPPING=1")
    finally:
        await asyncio.wait_for(daemon.stop(), timeout=15)
    return daemon.exit_code


def run_daemon(config: Config) -> int:
    """Entry point of `edge run`; returns the exit code."""
    configure_logging(config.log.level, config.log.format)
    try:
        return asyncio.run(serve(config))
    except EdgeError as exc:
        log.error("daemon.failed", error=str(exc))
        return 1
    except OSError as exc:
        # e.g. the port is taken: say which, don't print a traceback
        log.error("daemon.failed", error=str(exc))
        return 1
    return 0
