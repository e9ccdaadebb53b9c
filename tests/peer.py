"""A raw OCPP-J charger for protocol tests: frames as lists, nothing validated."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class RawCharger:
    """Sends and reads raw frames; keeps CALLs from the gateway in a queue."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.replies: dict[str, asyncio.Future[list[Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, station: str, version: str = "1.6", **kw: Any) -> RawCharger:
        ws = await connect(f"{url}/{station}", subprotocols=[f"ocpp{version}"], **kw)
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):  # the peer may die (kill -9 tests)
            await self._read_frames()

    async def _read_frames(self) -> None:
        async for data in self.ws:
            frame = orjson.loads(data)
            if frame[0] == 2:
                self.calls.put_nowait(frame)
            else:
                fut = self.replies.pop(frame[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)

    async def send_raw(self, text: str | bytes, expect_id: str | None = None) -> list[Any] | None:
        """Send anything; if `expect_id` is given, wait for the frame answering it."""
        fut: asyncio.Future[list[Any]] | None = None
        if expect_id is not None:
            fut = self.replies[expect_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(text)
        return await asyncio.wait_for(fut, 5) if fut else None

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL, return the whole answer frame ([3, id, {...}] or [4, id, code, ...])."""
        uid = f"t{next(self._ids)}"
        reply = await self.send_raw(orjson.dumps([2, uid, action, payload]), expect_id=uid)
        assert reply is not None
        return reply

    async def next_call(self, timeout: float = 5) -> list[Any]:
        """The next CALL the gateway sent us."""
        return await asyncio.wait_for(self.calls.get(), timeout)

    async def answer(self, frame: list[Any], payload: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps([3, frame[1], payload]))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


BOOT_16 = {"chargePointVendor": "TestVendor", "chargePointModel": "T1", "firmwareVersion": "1.0"}
BOOT_2 = {
    "reason": "PowerUp",
    "chargingStation": {"vendorName": "TestVendor", "model": "T2", "firmwareVersion": "2.0"},
}
