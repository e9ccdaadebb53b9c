"""One charger's OCPP-J RPC session over an open websocket.

Concurrency rules live here and only here (STYLE.md §12):
- the reader never waits on a handler, so the answer to our own CALL is always read,
  even while a charger CALL is being handled (the `ocpp` library's ChargePoint
  deadlocks when a handler awaits its own call());
- inbound CALLs are handled one after another in arrival order (a charger sends one
  at a time, OCPP-J 1.6 §4.1.1; order matters for transaction messages);
- at most one outbound CALL is outstanding per connection (OCPP-J 1.6 §4.1.1,
  OCPP-J 2.0.1 §4.1.1).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from websockets.exceptions import ConnectionClosed

from edge.domain.station import OcppVersion
from edge.errors import CommandFailed, CommandTimeout, StationNotConnected
from edge.metrics import Metrics
from edge.ocpp import frames, schemas, websocket
from edge.ocpp.frames import Call, CallError, CallResult, CallResultError, FrameError, Send

Payload = dict[str, Any]

# A charger sends one CALL at a time (OCPP-J 1.6 §4.1.1); one that sends more than this
# without waiting for answers is not read from until half of them are answered, so its
# flood waits unparsed in the sockets instead of in the daemon's memory.
INBOX_LIMIT = 16

# Handlers are shared by every connection of a version: they take the station id.
Handler = Callable[[str, Payload], Awaitable[Payload]]

log = structlog.get_logger("edge.ocpp")


class Socket(Protocol):
    """What the connection needs of a websocket (websockets' ServerConnection has it)."""

    async def send(self, message: str) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class CallErrorReply(Exception):
    """Raised by a handler to answer with a CALLERROR instead of a CALLRESULT."""

    def __init__(self, code: str, description: str = "", details: Payload | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class Connection:
    """Reads frames, answers the charger's CALLs through `handlers`, sends our CALLs."""

    def __init__(
        self,
        ws: Socket,
        station_id: str,
        version: OcppVersion,
        handlers: Mapping[str, Handler],
        *,
        call_timeout: float,
        metrics: Metrics,
    ) -> None:
        self.ws = ws
        self.station_id = station_id
        self.version = version
        self.handlers = handlers
        self.call_timeout = call_timeout
        self.metrics = metrics
        # Inbound CALLs wait here. One task drains them, started by the first and kept
        # until the connection closes, waiting on `_idle` in between: waking it costs a
        # fraction of creating a task per CALL, and it holds about 1 KB while idle.
        self._inbox: collections.deque[Call | Send | FrameError] = collections.deque()
        self._draining: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._held = False  # reading paused because the inbox is full
        self._pending: dict[str, asyncio.Future[Payload]] = {}
        self._call_lock = asyncio.Lock()
        # Our unique ids: a random per-connection prefix and a counter, never a
        # collision with ids the charger or the cloud use (OCPP-J 2.0.1 §6.4 spirit).
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self.closed = False
        self._direct = websocket.direct_capable(ws)

    async def serve(self) -> None:
        """Run until the socket closes; pending outbound calls then fail."""
        try:
            await self._read()
        finally:
            self.closed = True
            self._wake_drain()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(StationNotConnected(self.station_id))
            self._pending.clear()
            if self._draining is not None:
                # Let the CALL being handled finish its commit; its reply goes nowhere.
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # of `serve` that arrives together with the drain's end.
                try:
                    async with asyncio.timeout(5):
                        await asyncio.shield(self._draining)
                except TimeoutError:
                    pass
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # `serve` itself is being cancelled
                    # else the drain was cancelled (shutdown): nothing more to wait for

    async def _read(self) -> None:
        ws, direct = self.ws, self._direct
        if direct:
            # Whole text frames now come straight from the protocol (edge/ocpp/websocket.py);
            # recv() still gets what is fragmented or binary, in order. They are dispatched
            # in this task's context, so that log lines and the drain task keep the
            # station's bound log context.
            context = contextvars.copy_context()
            ws.on_text = lambda text: context.run(self._dispatch, text)  # type: ignore[attr-defined]
        try:
            while True:
                data = await ws.recv()
                if direct:
                    ws.took_one()  # type: ignore[attr-defined]
                self._dispatch(data)
        except ConnectionClosed:
            return
        finally:
            if direct:
                ws.on_text = None  # type: ignore[attr-defined]

    def _dispatch(self, data: str | bytes) -> None:
        try:
            frame = frames.parse(data, self.version)
        except FrameError as exc:
            self._frame_error(exc, data)
            return
        match frame:
            case Call() | Send():
                self._queue(frame)
            case CallResult():
                self._resolve(frame.unique_id, frame)
            case CallError() | CallResultError():
                self._resolve(frame.unique_id, frame)

    def _frame_error(self, exc: FrameError, data: str | bytes) -> None:
        log.warning(
            "ocpp.frame.invalid",
            code=exc.code,
            reason=exc.description,
            frame=(data[:200] if isinstance(data, str) else repr(data[:200])),
        )
        if exc.unique_id is not None:
            # Answered in turn, behind the CALLs before it, and counted in the inbox: a
            # flood of garbage is held back like a flood of CALLs.
            self._queue(exc)
            self.metrics.errors.labels(exc.code).inc()

    def _queue(self, item: Call | Send | FrameError) -> None:
        self._inbox.append(item)
        if len(self._inbox) >= INBOX_LIMIT:
            self._hold(True)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        else:
            self._wake_drain()

    def _resolve(self, unique_id: str, frame: CallResult | CallError | CallResultError) -> None:
        fut = self._pending.pop(unique_id, None)
        if fut is None or fut.done():
            log.warning("ocpp.result.unexpected", unique_id=unique_id, frame=type(frame).__name__)
            return
        if isinstance(frame, CallResult):
            fut.set_result(frame.payload)
        else:
            fut.set_exception(_ReplyError(frame.code, frame.description))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self._inbox:
                    item = self._inbox.popleft()
                    if self._held and len(self._inbox) <= INBOX_LIMIT // 2:
                        self._hold(False)
                    if isinstance(item, Call):
                        await self._answer(item)
                    elif isinstance(item, Send):
                        await self._notify(item)
                    else:  # a malformed CALL whose id could be read
                        assert item.unique_id is not None
                        await self._send(
                            frames.encode_error(item.unique_id, item.code, item.description)
                        )
                if self.closed:
                    return
                self._idle = loop.create_future()
                await self._idle
        finally:
            self._draining = None
            self._idle = None

    def _hold(self, held: bool) -> None:
        transport = getattr(self.ws, "transport", None)
        if transport is None or transport.is_closing():
            return
        if held and not self._held:
            log.warning("ocpp.inbox.full", waiting=len(self._inbox))
            self.metrics.inbox_holds.labels(self.version.value).inc()
        self._held = held
        if self._direct:
            self.ws.hold_input(held)  # type: ignore[attr-defined]
        if held:
            transport.pause_reading()
        elif not self._held:  # feeding what was held back may have filled the inbox again
            transport.resume_reading()

    def _wake_drain(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def _answer(self, call: Call) -> None:
        self._count_in(call.action)
        try:
            payload = await self._handle(call.action, call.payload)
        except CallErrorReply as exc:
            self.metrics.errors.labels(exc.code).inc()
            log.info("ocpp.call.refused", action=call.action, code=exc.code, reason=exc.description)
            await self._send(
                frames.encode_error(call.unique_id, exc.code, exc.description, exc.details)
            )
            return
        except Exception:
            log.exception("ocpp.handler.failed", action=call.action)
            self.metrics.errors.labels("InternalError").inc()
            await self._send(
                frames.encode_error(call.unique_id, "InternalError", "handler failed", {})
            )
            return
        await self._send(frames.encode_result(call.unique_id, payload))

    def _count_in(self, action: str) -> None:
        known = schemas.has_action(self.version, action)
        self.metrics.message("in", action if known else "unknown", self.version.value)

    async def _handle(self, action: str, payload: Payload) -> Payload:
        handler = self.handlers.get(action)
        if handler is None:
            # OCPP-J 1.6 §4.2.3 / 2.0.1 Part 4 §4.3: NotImplemented = action not known by
            # the receiver; NotSupported = recognised but not supported (the `ocpp`
            # library has these two swapped).
            if schemas.has_action(self.version, action):
                raise CallErrorReply("NotSupported", f"{action} is not supported by this CSMS")
            raise CallErrorReply("NotImplemented", f"unknown action {action!r}")
        try:
            schemas.validate_request(self.version, action, payload)
        except schemas.PayloadError as exc:
            raise CallErrorReply(exc.code, exc.description, exc.details) from exc
        return await handler(self.station_id, payload)

    async def _notify(self, send: Send) -> None:
        # OCPP 2.1 Part 4 §4.2.6: SEND is unconfirmed; never answered, not even on error.
        self._count_in(send.action)
        try:
            await self._handle(send.action, send.payload)
        except Exception as exc:
            log.info("ocpp.send.ignored", action=send.action, reason=str(exc))

    async def call(self, action: str, payload: Payload, timeout: float | None = None) -> Payload:
        """Send one CALL and return the charger's CALLRESULT payload.

        Raises StationNotConnected, CommandTimeout, CommandFailed (CALLERROR).
        """
        if self.closed:
            raise StationNotConnected(self.station_id)
        timeout = self.call_timeout if timeout is None else timeout
        # asyncio.timeout rather than wait_for: on 3.11 wait_for can drop a cancellation
        # that races the result, leaving the lock taken or the caller running on.
        try:
            async with asyncio.timeout(timeout):
                await self._call_lock.acquire()
        except TimeoutError:
            raise CommandTimeout(self.station_id, action, timeout) from None
        try:
            return await self._call_locked(action, payload, timeout)
        finally:
            self._call_lock.release()

    async def _call_locked(self, action: str, payload: Payload, timeout: float) -> Payload:
        unique_id = f"{self._prefix}-{next(self._ids)}"
        fut: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = fut
        self.metrics.message("out", action, self.version.value)
        try:
            await self._send(frames.encode_call(unique_id, action, payload))
            async with asyncio.timeout(timeout):
                result = await fut
        except TimeoutError:
            log.warning("ocpp.call.timeout", action=action, timeout_s=timeout)
            raise CommandTimeout(self.station_id, action, timeout) from None
        except _ReplyError as exc:
            log.info("ocpp.call.error", action=action, code=exc.code, reason=exc.description)
            raise CommandFailed(self.station_id, action, exc.code, exc.description) from None
        finally:
            self._pending.pop(unique_id, None)
        try:
            schemas.validate_response(self.version, action, result)
        except schemas.PayloadError as exc:
            log.warning("ocpp.result.invalid", action=action, code=exc.code, reason=exc.description)
            raise CommandFailed(self.station_id, action, exc.code, exc.description) from None
        return result

    async def _send(self, text: str) -> None:
        if self._direct and self.ws.send_now(text):  # type: ignore[attr-defined]
            return
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            log.info("ocpp.send.closed")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the websocket; `serve` then returns."""
        await self.ws.close(code, reason)


class _ReplyError(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
