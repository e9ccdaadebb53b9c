"""The OCPP uplink: each site station appears to the cloud CSMS as itself (DESIGN.md §4.5).

One upstream websocket per station, `{url}/{station}`, in the station's own OCPP
version. On every connect the station's BootNotification is replayed, then its current
connector states (not the history: OCPP 1.6 §4.9), then its outbox records in order,
one CALL at a time (OCPP-J: one outstanding CALL per direction). A record leaves the
outbox only on the cloud's CALLRESULT. 1.6 transaction ids: the cloud's id from the
upstream StartTransaction.conf is stored against the session; later MeterValues and
StopTransaction go up with it (-1 if the cloud never gave one). 2.x TransactionEvents
made while the cloud was away go up with `offline = true`. A CALLERROR is retried
(OCPP 1.6 §3.7.1 TransactionMessageAttempts; 2.0.1 E13 likewise) and then parked as a
dead letter. Cloud CALLs are passed to the charger and its answer goes back up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
import websockets

from edge.domain.units import iso_utc
from edge.errors import CommandFailed
from edge.store.outbox import OutboxRecord
from edge.uplink import ocpp_messages as messages

log = structlog.get_logger("edge.uplink.ocpp")

ATTEMPTS = 3  # tries of a transaction message the cloud answers with a CALLERROR
RETRY_S = 1.0  # first wait before a retry; doubled each time
CALL_TIMEOUT_S = 30.0
AUTHORIZE_TIMEOUT_S = 2.0  # a charger's driver is waiting: the cloud answers fast or not at all
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0


class CallError(Exception):
    """The cloud answered a CALL with a CALLERROR."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        super().__init__(f"{code} {description}".strip())


@dataclass
class StationLink:
    """What the uplink needs of one station (given by the service)."""

    id: str
    version: str  # "1.6" | "2.0.1" | "2.1"
    identity: Callable[[], dict[str, str]]  # vendor, model, firmware, serial
    connectors: Callable[[], dict[int, str]]  # connector / EVSE -> status now
    password: str | None = None  # its own password towards the cloud, else the shared one


@dataclass
class Store:
    """The outbox operations the uplink uses (edge.store.outbox over the writer)."""

    pending: Callable[[str, int, int], Awaitable[list[OutboxRecord]]]
    ack: Callable[[int], Awaitable[None]]
    cloud_tx: Callable[[int], Awaitable[int | None]]
    map_tx: Callable[[int, int, int], Awaitable[None]]
    local_session: Callable[[int], Awaitable[int | None]]
    park: Callable[[OutboxRecord, str], Awaitable[None]]


Forward = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Upstream:
    """One station's connection to the cloud and its reconnect loop."""

    link: StationLink
    url: str
    password: str | None
    store: Store
    forward: Forward
    ssl: Any = None
    stop_on_invalid_id: bool = True
    connected: bool = False
    delivered: int = 0
    last_error: str | None = None
    failures: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _pending: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _retry: asyncio.Event = field(default_factory=asyncio.Event)
    _connected_at: str = ""
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _ws: Any = None

    @property
    def v16(self) -> bool:
        return self.link.version == "1.6"

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cloud went away or refused us
                error = (str(exc) or type(exc).__name__).splitlines()[0][:200]
                if self.connected or error != self.last_error:
                    log.warning("uplink.ocpp.disconnected", station=self.link.id, error=error)
                self.connected, self.last_error = False, error
                self.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** max(self.failures - 1, 0))
            self._retry.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay + random.uniform(0, delay / 4)):
                    await self._retry.wait()

    async def _session(self) -> None:
        headers = {}
        password = self.link.password or self.password
        if password:
            token = base64.b64encode(f"{self.link.id}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        async with websockets.connect(
            f"{self.url.rstrip('/')}/{self.link.id}",
            subprotocols=[websockets.Subprotocol(f"ocpp{self.link.version}")],
            additional_headers=headers,
            ssl=self.ssl,
            open_timeout=10,
        ) as ws:
            self._ws = ws
            try:
                # The reader runs from the start (the boot's answer comes through it);
                # when it ends, the connection is gone and the group ends with it.
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._read(ws))
                    interval = await self._boot(ws)
                    self.connected, self.failures, self.last_error = True, 0, None
                    self._connected_at = iso_utc(datetime.now(UTC))
                    log.info("uplink.ocpp.connected", station=self.link.id, url=self.url)
                    await self._statuses(ws)
                    tasks.create_task(self._pump(ws))
                    tasks.create_task(self._heartbeat(ws, interval))
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            finally:
                self.connected, self._ws = False, None

    # -- framing -------------------------------------------------------------------------

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            frame = messages.frame(raw)
            if frame is None:
                # Not an OCPP-J frame at all: nothing to answer (no unique id to trust).
                log.warning("uplink.ocpp.frame.invalid", station=self.link.id, frame=str(raw)[:200])
            elif frame[0] in (3, 4) and frame[1] in self._pending:
                fut = self._pending.pop(frame[1])
                if frame[0] == 3 and isinstance(frame[2], dict):
                    fut.set_result(frame[2])
                elif frame[0] == 3:  # retried, then parked, like a CALLERROR
                    fut.set_exception(CallError("FormationViolation", "payload is not an object"))
                else:
                    description = str(frame[3]) if len(frame) > 3 else ""
                    fut.set_exception(CallError(str(frame[2]), description))
            elif frame[0] == 2 and len(frame) == 4 and isinstance(frame[3], dict):
                task = asyncio.create_task(self._answer(ws, frame))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            elif frame[0] == 2:  # OCPP-J 1.6 §4.2.3: a CALL we cannot read
                error = "CALL needs an action and a payload"
                await _reply(ws, [4, frame[1], "FormationViolation", error, {}])
            else:
                # A late answer to a CALL that timed out, a 2.1 CALLRESULTERROR about one of
                # our answers, or a 2.1 SEND: nothing waits for it (OCPP-J 2.1 §4.2.5-6).
                log.info("uplink.ocpp.frame.unexpected", station=self.link.id, type=frame[0])
        raise ConnectionError("the cloud closed the connection")

    async def _call(self, ws: Any, action: str, payload: dict[str, Any]) -> Any:
        async with self._lock:  # one outstanding CALL upstream (OCPP-J §4.1.1)
            unique = f"up-{next(self._ids)}"
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[unique] = fut
            await ws.send(orjson.dumps([2, unique, action, payload]).decode())
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    return await fut
            finally:
                self._pending.pop(unique, None)

    async def _answer(self, ws: Any, frame: list[Any]) -> None:
        """A cloud CALL: passed to the charger, whose answer goes back up."""
        unique, action, payload = frame[1], frame[2], frame[3]
        try:
            if self.v16:
                payload = await messages.local_ids(action, payload, self.store.local_session)
            result = await self.forward(self.link.id, action, payload)
            reply: list[Any] = [3, unique, result]
        except CommandFailed as exc:
            # The charger's own CALLERROR goes up as it came (OCPP-J 1.6 §4.2.3).
            reply = [4, unique, exc.code, exc.description[:255], {}]
        except Exception as exc:
            reply = [4, unique, "InternalError", str(exc)[:255], {}]
        await _reply(ws, reply)

    async def authorize(self, id_tag: str) -> dict[str, Any] | None:
        """Ask the cloud about a tag while connected: its idTagInfo / idTokenInfo, or None
        when it cannot answer in time (the local list and cache decide then)."""
        ws = self._ws
        if not self.connected or ws is None:
            return None
        payload: dict[str, Any]
        if self.v16:
            payload, key = {"idTag": id_tag}, "idTagInfo"
        else:
            payload = {"idToken": {"idToken": id_tag, "type": "ISO14443"}}
            key = "idTokenInfo"
        try:
            async with asyncio.timeout(AUTHORIZE_TIMEOUT_S):
                answer = await self._call(ws, "Authorize", payload)
        except (TimeoutError, CallError, websockets.ConnectionClosed) as exc:
            log.info("uplink.ocpp.authorize.unanswered", station=self.link.id, error=str(exc))
            return None
        info = answer.get(key) if isinstance(answer, dict) else None
        return info if isinstance(info, dict) else None

    # -- what goes up --------------------------------------------------------------------

    async def _boot(self, ws: Any) -> int:
        """Replay the charger's BootNotification until the cloud accepts it."""
        while True:
            who = self.link.identity()
            payload: dict[str, Any]
            if self.v16:
                payload = {"chargePointVendor": who["vendor"], "chargePointModel": who["model"]}
                if who.get("firmware"):
                    payload["firmwareVersion"] = who["firmware"]
                if who.get("serial"):
                    payload["chargePointSerialNumber"] = who["serial"]
            else:
                station = {"vendorName": who["vendor"], "model": who["model"]}
                if who.get("firmware"):
                    station["firmwareVersion"] = who["firmware"]
                if who.get("serial"):
                    station["serialNumber"] = who["serial"]
                payload = {"reason": "PowerUp", "chargingStation": station}
            answer = await self._call(ws, "BootNotification", payload)
            interval = int(answer.get("interval") or 300)
            if answer.get("status") == "Accepted":
                return interval
            await asyncio.sleep(max(interval, 10))  # Pending / Rejected: ask again later

    async def _statuses(self, ws: Any) -> None:
        """The current state of each connector (OCPP 1.6 §4.9: not the history)."""
        for connector, status in sorted(self.link.connectors().items()):
            if self.v16:
                payload: dict[str, Any] = {
                    "connectorId": connector,
                    "errorCode": "NoError",
                    "status": status,
                }
            else:
                payload = {
                    "timestamp": iso_utc(datetime.now(UTC)),
                    "connectorStatus": status,
                    "evseId": connector,
                    "connectorId": 1,
                }
            await self._call(ws, "StatusNotification", payload)

    async def _heartbeat(self, ws: Any, interval: int) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._call(ws, "Heartbeat", {})

    async def _pump(self, ws: Any) -> None:
        while True:
            records = await self.store.pending(self.link.id, 50, 0)
            if not records:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._wake.wait()
                continue
            for record in records:
                await self._deliver(ws, record)

    async def _deliver(self, ws: Any, record: OutboxRecord) -> None:
        data = orjson.loads(record.data)
        message = await messages.upstream(
            record, data, self.link.version, self._connected_at, self.store.cloud_tx
        )
        if message is None:  # nothing the cloud takes as a CALL: let it go
            await self.store.ack(record.id)
            return
        action, payload = message
        for attempt in range(1, ATTEMPTS + 1):
            try:
                answer = await self._call(ws, action, payload)
            except CallError as exc:
                if attempt == ATTEMPTS:
                    log.error(
                        "uplink.ocpp.parked", station=self.link.id, action=action, error=str(exc)
                    )
                    await self.store.park(record, str(exc))
                    return
                await asyncio.sleep(RETRY_S * 2 ** (attempt - 1))
                continue
            await self._acknowledged(record, data, action, answer)
            return

    on_delivered: Callable[[int], None] = lambda n: None

    async def _acknowledged(
        self, record: OutboxRecord, data: dict[str, Any], action: str, answer: Any
    ) -> None:
        if self.v16 and action == "StartTransaction" and data.get("session_id") is not None:
            cloud = int(answer["transactionId"])
            await self.store.map_tx(int(data["session_id"]), cloud, record.id)
            status = (answer.get("idTagInfo") or {}).get("status")
            if status not in (None, "Accepted"):
                await self._refused(status, "RemoteStopTransaction", data["session_id"])
        else:
            await self.store.ack(record.id)
            info = answer.get("idTokenInfo") if isinstance(answer, dict) else None
            status = info.get("status") if isinstance(info, dict) else None
            if action == "TransactionEvent" and status not in (None, "Accepted"):
                await self._refused(status, "RequestStopTransaction", data.get("transaction_id"))
        self.delivered += 1
        self.on_delivered(1)

    async def _refused(self, status: str, action: str, transaction: Any) -> None:
        """The cloud refused the session's idTag: stop it (StopTransactionOnInvalidId)."""
        log.warning("uplink.ocpp.id_refused", station=self.link.id, status=status)
        if not self.stop_on_invalid_id or transaction is None:
            return
        key = "transactionId"
        payload = {key: transaction if action == "RemoteStopTransaction" else str(transaction)}
        with contextlib.suppress(Exception):  # already over, or the charger is away
            await self.forward(self.link.id, action, payload)


async def _reply(ws: Any, frame: list[Any]) -> None:
    """Answer a cloud CALL; a closed socket ends the connection elsewhere."""
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(orjson.dumps(frame).decode())


class OcppUplink:
    """Every station's upstream; a station joins once it has connected and booted here."""

    def __init__(
        self,
        url: str,
        password: str | None,
        store: Store,
        forward: Forward,
        links: Callable[[], list[StationLink]],
        ssl: Any = None,
        stop_on_invalid_id: bool = True,
    ) -> None:
        self.stop_on_invalid_id = stop_on_invalid_id
        self.url = url
        self.password = password
        self.store = store
        self.forward = forward
        self.links = links
        self.ssl = ssl
        self.upstreams: dict[str, Upstream] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.on_delivered: Callable[[int], None] = lambda n: None

    @property
    def connected(self) -> bool:
        ups = self.upstreams.values()
        return bool(ups) and all(u.connected for u in ups)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._watch(), name="uplink-ocpp"))

    async def _watch(self) -> None:
        while True:
            for link in self.links():
                if link.id not in self.upstreams:
                    up = Upstream(
                        link,
                        self.url,
                        self.password,
                        self.store,
                        self.forward,
                        self.ssl,
                        self.stop_on_invalid_id,
                    )
                    up.on_delivered = lambda n: self.on_delivered(n)
                    self.upstreams[link.id] = up
                    self._tasks.append(asyncio.create_task(up.run(), name=f"uplink-{link.id}"))
            await asyncio.sleep(2.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self, *_: Any) -> None:
        for up in self.upstreams.values():
            up._wake.set()

    def retry(self) -> None:
        for up in self.upstreams.values():
            up._retry.set()

    async def authorize(self, station: str, id_tag: str) -> dict[str, Any] | None:
        """The cloud's answer for a tag presented at `station`, if it gives one in time."""
        up = self.upstreams.get(station)
        return None if up is None else await up.authorize(id_tag)

    def status(self) -> dict[str, Any]:
        ups = self.upstreams.values()
        errors = [u.last_error for u in ups if u.last_error]
        return {
            "connected": self.connected,
            "delivered": sum(u.delivered for u in ups),
            "last_error": errors[0] if errors else None,
            "stations": {
                u.link.id: {"connected": u.connected, "last_error": u.last_error} for u in ups
            },
        }
