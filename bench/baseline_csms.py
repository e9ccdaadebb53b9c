"""The baseline: a central system built on the `ocpp` library's ChargePoint, defaults,
no persistence. One ChargePoint per connection, by negotiated subprotocol."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import resource
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16
from ocpp.v16 import call_result as r16
from ocpp.v201 import ChargePoint as CP201
from ocpp.v201 import call_result as r201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TX = itertools.count(1)


def now() -> str:
    return datetime.now(UTC).isoformat()


class Central16(CP16):
    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        return r16.BootNotification(current_time=now(), interval=3600, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self) -> Any:
        return r16.Heartbeat(current_time=now())

    @on("StartTransaction")
    def start_transaction(self, **kw: Any) -> Any:
        return r16.StartTransaction(transaction_id=next(TX), id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def meter_values(self, **kw: Any) -> Any:
        return r16.MeterValues()


class Central201(CP201):
    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        return r201.BootNotification(current_time=now(), interval=3600, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self) -> Any:
        return r201.Heartbeat(current_time=now())

    @on("TransactionEvent")
    def transaction_event(self, **kw: Any) -> Any:
        return r201.TransactionEvent()


async def handler(ws: ServerConnection) -> None:
    station = (ws.request.path if ws.request else "/x").rsplit("/", 1)[-1]
    cp = Central16(station, ws) if ws.subprotocol == "ocpp1.6" else Central201(station, ws)
    # A closed socket ends the charge point's receive loop.
    with contextlib.suppress(ConnectionClosed):
        await cp.start()


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
        ping_interval=None,
    ):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(p.parse_args().port))
