"""The MQTT uplink: the outbox to the broker, commands from it (DESIGN.md §4.4).

A record leaves the outbox only after the broker's PUBACK (QoS 1): a batch (`_Batch`)
returns once every one of its records has one. A lost connection leaves the rest in the
outbox; they go again after the reconnect, so the cloud may see a duplicate (same `id`),
never a gap. The gateway's
status is retained with a last will (`offline`); each station's state is retained and
republished when it changes. Commands arrive on `commands/{station}/{command}` and are
answered on `commands/results/{request_id}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import structlog

from edge.store import outbox
from edge.store.outbox import OutboxRecord
from edge.uplink import topics

log = structlog.get_logger("edge.uplink.mqtt")

BATCH = 500  # records published before their acknowledgements are awaited together
# paho's in-flight window: 0 = none. With a window, every PUBACK walks all queued
# messages to release the next one (paho 2.x `_update_inflight`), quadratic in the
# batch; BATCH already bounds what is outstanding.
INFLIGHT = 0
IDLE_S = 0.5  # how often an empty outbox is looked at again (a new record also wakes it)
STATE_EVERY_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0

ReadOutbox = Callable[[int, int], Awaitable[list[OutboxRecord]]]  # (limit, after id)
Acknowledge = Callable[[list[int]], Awaitable[int]]
RunCommand = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    prefix: str = "edge"
    qos: int = 1
    site: str = "site"
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"


def store_access(store: Any) -> tuple[ReadOutbox, Acknowledge]:
    """The two outbox operations over an `edge.store.writer.Store`."""

    async def read(limit: int, after: int) -> list[OutboxRecord]:
        return list(await store.read(lambda c: outbox.pending(c, limit, after)))

    async def ack(ids: list[int]) -> int:
        return int(await store.write(lambda c: outbox.delivered(c, ids)))

    return read, ack


class MqttUplink:
    """Owns the broker connection and its reconnect loop."""

    def __init__(
        self,
        settings: BrokerSettings,
        read: ReadOutbox,
        ack: Acknowledge,
        run_command: RunCommand,
        states: Callable[[], dict[str, dict[str, Any]]],
        meter_states: Callable[[], dict[str, dict[str, Any]]] = dict,
    ) -> None:
        self.settings = settings
        self.read = read
        self.ack = ack
        self.run_command = run_command
        self.states = states
        self.meter_states = meter_states
        self.connected = False
        self.delivered = 0
        self.last_error: str | None = None
        self.failures = 0
        self._wake = asyncio.Event()
        self._retry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published: dict[str, bytes] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.on_delivered: Callable[[int], None] = lambda n: None  # metrics

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="uplink-mqtt")

    async def stop(self) -> None:
        """Say `offline` and disconnect. Cancelled again if a cancellation is lost in a
        connect under way (3.11's wait_for can drop one), and the loop checks the flag."""
        self._stopping = True
        self._retry.set()
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2)

    def wake(self, *_: Any) -> None:
        """New records were committed (SiteService listener)."""
        self._wake.set()

    def retry(self) -> None:
        """`edge uplink retry`: reconnect now instead of after the backoff."""
        self._retry.set()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "delivered": self.delivered,
            "last_error": self.last_error,
            "broker": f"{self.settings.host}:{self.settings.port}",
        }

    # -- the reconnect loop ----------------------------------------------------------------

    async def _run(self) -> None:
        s = self.settings
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away or refused us
                self._lost(exc)
            delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** max(self.failures - 1, 0))
            delay += random.uniform(0, delay / 4)  # jitter: sites do not reconnect in step
            self._retry.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry.wait()
            log.info("uplink.reconnecting", broker=f"{s.host}:{s.port}")

    def _lost(self, exc: BaseException) -> None:
        error = _describe(exc)
        if self.connected or self.last_error != error:
            log.warning("uplink.disconnected", error=error)  # once per outage
        self.connected = False
        self.last_error = error
        self.failures += 1

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        status = topics.status_topic(s.prefix, s.site)
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=f"edge-{s.site}",
            # Commands sent while the gateway was away wait at the broker (MQTT 3.1.1
            # §3.1.2.4); uplink data waits in our own outbox, not in the session.
            clean_session=False,
            will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
            tls_context=ssl.create_default_context() if s.tls else None,
            keepalive=30,
            # A batch is published back to back: no paho window (its default is 20).
            max_inflight_messages=INFLIGHT,
        )

    async def _session(self) -> None:
        s = self.settings
        client = self._client()
        async with client:
            self.connected, self.failures, self.last_error = True, 0, None
            self._published.clear()
            log.info("uplink.connected", broker=f"{s.host}:{s.port}")
            status = topics.status_topic(s.prefix, s.site)
            await client.publish(status, b"online", qos=1, retain=True)
            await client.subscribe(topics.commands_filter(s.prefix, s.site), qos=1)
            if s.homeassistant:
                await self._discovery(client)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._pump(client))
                    tasks.create_task(self._commands(client))
                    tasks.create_task(self._states(client))
            except asyncio.CancelledError:
                # a clean stop: the last will is only for an unexpected loss
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await client.publish(status, b"offline", qos=1, retain=True)
                raise
            except BaseExceptionGroup as group:
                raise group.exceptions[0] from None
            finally:
                self.connected = False

    # -- what flows ----------------------------------------------------------------------

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Batches in commit order; a batch's rows are deleted (one commit) while the
        next batch is already on its way. A new connection starts again from the
        oldest row still in the outbox."""
        s = self.settings
        after, deleting = 0, None
        batch = _Batch(client)
        try:
            while True:
                records = await self.read(BATCH, after)
                if not records:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_S):
                            await self._wake.wait()
                    continue
                # Published in order on one connection; the broker keeps that order.
                await batch.publish(
                    [
                        (topics.event_topic(s.prefix, s.site, r.type), topics.envelope(r, s.site))
                        for r in records
                    ],
                    s.qos,
                )
                after = records[-1].id
                if deleting is not None:
                    await deleting
                deleting = asyncio.ensure_future(self._acknowledged([r.id for r in records]))
        finally:
            if deleting is not None:  # acknowledged by the broker: let go of them anyway
                with contextlib.suppress(Exception):  # if not, they go again: a duplicate
                    await asyncio.shield(deleting)

    async def _acknowledged(self, ids: list[int]) -> None:
        done = await self.ack(ids)
        self.delivered += done
        self.on_delivered(done)

    async def _states(self, client: aiomqtt.Client) -> None:
        """Each station's and meter's state, retained; republished when it changes."""
        s = self.settings
        while True:
            changed = [
                (topics.state_topic(s.prefix, s.site, station), state)
                for station, state in self.states().items()
            ] + [
                (topics.meter_state_topic(s.prefix, s.site, meter), state)
                for meter, state in self.meter_states().items()
            ]
            for topic, state in changed:
                payload = orjson.dumps(state)
                if self._published.get(topic) != payload:
                    await client.publish(topic, payload, qos=1, retain=True)
                    self._published[topic] = payload
            await asyncio.sleep(STATE_EVERY_S)

    async def _discovery(self, client: aiomqtt.Client) -> None:
        """Home Assistant MQTT discovery, retained, on every connect."""
        s = self.settings
        configs = topics.discovery(
            s.prefix, s.site, s.discovery_prefix, sorted(self.states()), sorted(self.meter_states())
        )
        for topic, payload in configs:
            await client.publish(topic, payload, qos=1, retain=True)
        log.info("uplink.homeassistant.discovery", entities=len(configs))

    async def _commands(self, client: aiomqtt.Client) -> None:
        s = self.settings
        async for message in client.messages:
            parsed = topics.parse_command_topic(s.prefix, s.site, str(message.topic))
            if parsed is None:
                continue
            task = asyncio.create_task(self._command(client, *parsed, message.payload))
            self._running.add(task)  # held until done: a bare task may be collected
            task.add_done_callback(self._running.discard)

    async def _command(self, client: aiomqtt.Client, station: str, command: str, raw: Any) -> None:
        s = self.settings
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            log.warning("uplink.command.bad_json", station=station, command=command, error=str(exc))
            return
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            log.warning("uplink.command.no_request_id", station=station, command=command)
            return
        request_id = body.pop("request_id")
        try:
            result = await self.run_command(station, command, body)
            payload = topics.command_result(request_id, station, command, ok=True, result=result)
        except Exception as exc:  # every failure is an answer, never silence
            error = {"type": type(exc).__name__, "message": str(exc)}
            payload = topics.command_result(request_id, station, command, ok=False, error=error)
        log.info("uplink.command", station=station, command=command, request_id=request_id)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topics.result_topic(s.prefix, s.site, request_id), payload, qos=1)


class _Batch:
    """Publishes a batch of records and waits once for all their PUBACKs.

    aiomqtt's `publish` waits for each PUBACK with an Event, a `wait_for` task and a walk
    over every pending call; paho's own `publish` builds a message, an info object with a
    condition variable and a socket write per record, and decodes each PUBACK into a
    reason code and a properties object. Per record that cost more CPU than the rest of
    the uplink. On MQTT 3.1.1 with QoS 1 (the default), a batch is therefore encoded here
    (MQTT 3.1.1 §3.3) and handed to paho's writer as one queue entry, with packet ids from
    paho's own counter; the PUBACKs of those ids (§3.4) are taken before paho decodes
    them, and paho's socket is read in blocks rather than a byte at a time. This uses
    paho's private members (`_client` of aiomqtt, pinned to 2.5.x; `_mid_generate`,
    `_packet_queue`, `_handle_pubackcomp`, `_in_packet`, `_sock_recv` of paho, pinned
    below 2.3). Any other protocol or QoS goes through paho's `publish`. aiomqtt's own
    `on_publish` still runs for every other publish (state, results, discovery).
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho: paho.Client = client._client
        self._timeout = client.timeout
        self._waiting: set[int] = set()
        self._all_acked: asyncio.Future[None] | None = None
        self._direct = self._paho.protocol == paho.MQTTv311
        original = self._paho.on_publish

        def on_publish(*args: Any) -> None:  # (client, userdata, mid, reason, properties)
            if args[2] in self._waiting:
                self._acked(args[2])  # one of ours: aiomqtt has nothing pending for it
            elif original is not None:
                original(*args)

        self._paho.on_publish = on_publish
        if self._direct:
            self._take_pubacks()
            _read_in_blocks(self._paho)

    async def publish(self, messages: list[tuple[str, bytes]], qos: int) -> None:
        """Return when the broker has acknowledged every message (QoS 1), or raise."""
        self._all_acked = asyncio.get_running_loop().create_future()
        if self._direct and qos == 1:
            self._queue(messages)
        else:
            for topic, payload in messages:
                info = self._paho.publish(topic, payload, qos)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                if not info.is_published():
                    self._waiting.add(info.mid)
        if self._waiting:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._all_acked
            except TimeoutError:
                self._waiting.clear()
                raise aiomqtt.MqttError(
                    f"no PUBACK within {self._timeout:g} s for a batch of {len(messages)}"
                ) from None

    def _queue(self, messages: list[tuple[str, bytes]]) -> None:
        if not self._paho.is_connected():
            raise aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "Could not publish message")
        packets = []
        for topic, payload in messages:
            mid = self._paho._mid_generate()
            self._waiting.add(mid)
            packets.append(encode_publish(topic, payload, mid))
        # One entry in paho's write queue: written with as few syscalls as the socket
        # allows, in order, before anything queued after it.
        self._paho._packet_queue(paho.PUBLISH, b"".join(packets), 0, 1)

    def _take_pubacks(self) -> None:
        paho_client = self._paho
        plain = paho_client._handle_pubackcomp

        def handle(command: Any) -> Any:
            body = paho_client._in_packet["packet"]  # a new dict for every packet
            if command == "PUBACK" and len(body) == 2:
                mid = body[0] << 8 | body[1]
                if mid in self._waiting:
                    self._acked(mid)
                    return paho.MQTT_ERR_SUCCESS
            return plain(command)

        # An instance attribute in front of paho's method, for this connection only.
        self._paho._handle_pubackcomp = handle  # type: ignore[method-assign, assignment]

    def _acked(self, mid: int) -> None:
        self._waiting.discard(mid)
        if not self._waiting and self._all_acked is not None and not self._all_acked.done():
            self._all_acked.set_result(None)


def encode_publish(topic: str, payload: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 1, neither DUP nor RETAIN (§3.3.1, §3.3.2)."""
    name = topic.encode()
    length = 2 + len(name) + 2 + len(payload)
    header = bytearray(b"\x32")  # PUBLISH, QoS 1
    while True:  # §2.2.3: the remaining length, 7 bits per byte
        length, digit = divmod(length, 128)
        header.append(digit | 0x80 if length else digit)
        if not length:
            break
    return b"".join((header, len(name).to_bytes(2, "big"), name, mid.to_bytes(2, "big"), payload))


def _read_in_blocks(client: paho.Client) -> None:
    """paho reads a packet's type and each byte of its length with a socket read of its
    own: three reads per PUBACK. Read the socket in blocks and serve paho from those;
    `loop_read` goes on while a block still holds data, which the socket will not
    announce again."""
    block = bytearray()
    recv = client._sock_recv
    loop_read = client.loop_read

    def buffered_recv(size: int) -> bytes:
        if not block:
            data = recv(65536)
            if not data:
                return data  # the broker closed the connection
            block.extend(data)
        out = bytes(block[:size])
        del block[:size]
        return out

    def read_all(max_packets: int = 1) -> Any:
        rc = loop_read(max_packets)
        while block and rc == paho.MQTT_ERR_SUCCESS:
            rc = loop_read(max_packets)
        return rc

    # Instance attributes in front of paho's methods, for this connection only.
    client._sock_recv = buffered_recv  # type: ignore[method-assign, assignment]
    client.loop_read = read_all  # type: ignore[method-assign]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
