"""A small OCPP-J client link over one websocket: our CALLs one at a time, theirs answered.

OCPP-J 1.6 §4.1.1 / OCPP-J 2.0.1 §4.1.1: a sender has at most one outstanding CALL; the
other direction stays independent, so the central system's CALLs are answered while ours
wait for their result.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from edge.domain.units import iso_utc

Payload = dict[str, Any]
# An answer to a CALL: the CALLRESULT payload and an optional follow-up run after it is sent.
FollowUp = Callable[[], Awaitable[Any]]
Answer = tuple[Payload, FollowUp | None]
Responder = Callable[[str, Payload], Answer | None]

CALL, RESULT, ERROR = 2, 3, 4


def now_iso() -> str:
    """The current time as an OCPP dateTime."""
    return iso_utc(datetime.now(UTC))


class CallFailed(Exception):
    """The central system answered a CALL with a CALLERROR, or not in time, or went away."""


class Link:
    """One open connection: `call()` for ours, `serve()` reads and answers theirs."""

    def __init__(self, ws: ClientConnection, station: str, respond: Responder, *, v2: bool) -> None:
        self.ws = ws
        self.station = station
        self.respond = respond
        self.v2 = v2
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._waiting: tuple[str, asyncio.Future[Payload]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def call(self, action: str, payload: Payload, timeout: float = 30.0) -> Payload:
        """Send a CALL and wait for its CALLRESULT payload."""
        async with self._lock:
            uid = f"{self.station}-{next(self._ids)}"
            fut: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
            self._waiting = (uid, fut)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives together with the result.
                async with asyncio.timeout(timeout):
                    await self.ws.send(orjson.dumps([CALL, uid, action, payload]).decode())
                    return await fut
            except TimeoutError:
                raise CallFailed(f"{action}: no answer within {timeout:g} s") from None
            except ConnectionClosed:
                raise CallFailed(f"{action}: connection closed") from None
            finally:
                self._waiting = None

    async def serve(self) -> None:
        """Read frames until the connection closes; then fail whatever still waits."""
        try:
            async for data in self.ws:
                self._frame(data)
        except ConnectionClosed:
            pass
        finally:
            if self._waiting is not None and not self._waiting[1].done():
                self._waiting[1].set_exception(CallFailed("connection closed"))
            for task in list(self._tasks):
                task.cancel()

    def _frame(self, data: str | bytes) -> None:
        try:
            frame = orjson.loads(data)
            kind, uid = frame[0], frame[1]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return  # OCPP-J 1.6 §4.2.3: nothing sensible to answer without a message id
        if kind == CALL:
            self._spawn(self._answer(uid, frame[2], frame[3] if len(frame) > 3 else {}))
        elif kind in (RESULT, ERROR) and self._waiting and self._waiting[0] == uid:
            fut = self._waiting[1]
            if fut.done():
                return
            if kind == RESULT:
                fut.set_result(frame[2])
            else:
                fut.set_exception(CallFailed(f"{frame[2]}: {frame[3]}"))
        # Anything else (late results, 2.1 SEND frames) needs no answer.

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, uid: str, action: str, payload: Payload) -> None:
        follow_up: FollowUp | None = None
        try:
            answer = self.respond(action, payload)
        except (KeyError, TypeError, ValueError) as exc:
            # OCPP-J 1.6 §4.2.3 FormationViolation / 2.0.1 §4.3 FormatViolation.
            code = "FormatViolation" if self.v2 else "FormationViolation"
            reply: list[Any] = [ERROR, uid, code, f"{action}: {exc!r}"[:255], {}]
        else:
            if answer is None:
                reply = [ERROR, uid, "NotImplemented", f"{action} is not supported", {}]
            else:
                reply = [RESULT, uid, answer[0]]
                follow_up = answer[1]
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(orjson.dumps(reply).decode())
        if follow_up is not None:
            with contextlib.suppress(CallFailed):
                await follow_up()
