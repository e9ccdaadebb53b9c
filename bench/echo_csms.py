"""The floor: a websockets server that answers every CALL with a fixed CALLRESULT.

No validation, no handler, no persistence: what the load generator reaches against the
websocket layer alone (the `websockets` asyncio server that edge and the baseline both
use). A central system built on it cannot be faster than this on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

ANSWERS = {
    "BootNotification": {
        "status": "Accepted",
        "currentTime": "2026-11-22T10:00:00Z",
        "interval": 3600,
    },
    "StartTransaction": {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
}


async def answer(ws: ServerConnection) -> None:
    try:
        async for data in ws:
            frame = orjson.loads(data)
            await ws.send(orjson.dumps([3, frame[1], ANSWERS.get(frame[2], {})]).decode())
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with serve(
        answer, "127.0.0.1", port, subprotocols=["ocpp1.6", "ocpp2.0.1"], compression=None
    ):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    asyncio.run(main(p.parse_args().port))
