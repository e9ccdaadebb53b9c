"""The parts alone: what every conforming central system must do, and nothing else.

Each CALL is parsed, validated with edge's compiled validator of the official schema,
and journaled durably before it is answered: two rows per message (the journal row and
its outbox record, DESIGN.md §2), group commit in one writer thread with executemany,
WAL and synchronous=FULL. No handler, no live state, no sessions, no metrics.

`--workers N` runs N such servers as processes on one port (SO_REUSEPORT), each with a
database file of its own, so that the GIL of one process is not the limit. A central
system that also does the work of a real one cannot be faster than this on the same
machine; bench/ocpp_throughput.py sets it against the baseline in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import queue
import signal
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from edge.domain.station import OcppVersion
from edge.ocpp import schemas

ANSWERS: dict[str, dict[str, Any]] = {
    "BootNotification": {
        "status": "Accepted",
        "currentTime": "2026-11-22T10:00:00Z",
        "interval": 3600,
    },
    "StartTransaction": {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
}

# One queued message: station, action, the frame as received, the future its reply awaits.
Item = tuple[str, str, bytes, asyncio.Future[None]]


def open_journal(path: Path) -> sqlite3.Connection:
    """The least durable journal with an outbox (bench/ceiling.py times the same one)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY, station TEXT, data BLOB)")
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, station TEXT, type TEXT, data BLOB)")
    conn.execute("CREATE INDEX outbox_station ON outbox (station, id)")
    return conn


def commit(conn: sqlite3.Connection, rows: list[tuple[str, str, bytes]]) -> None:
    """One transaction: each message's (station, action, frame) as a journal row and an
    outbox record (DESIGN.md §2: both commit together)."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO journal (station, data) VALUES (?, ?)", [(s, d) for s, _, d in rows]
    )
    conn.executemany("INSERT INTO outbox (station, type, data) VALUES (?, ?, ?)", rows)
    conn.execute("COMMIT")


def journal(path: Path, items: queue.SimpleQueue[Item], loop: asyncio.AbstractEventLoop) -> None:
    """The writer thread: every waiting message in one transaction, then their replies."""
    conn = open_journal(path)
    while True:
        batch = [items.get()]
        while len(batch) < 1000:
            try:
                batch.append(items.get_nowait())
            except queue.Empty:
                break
        commit(conn, [(s, a, d) for s, a, d, _ in batch])
        loop.call_soon_threadsafe(_release, [fut for *_, fut in batch])


def _release(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


async def server(port: int, path: Path) -> None:
    loop = asyncio.get_running_loop()
    items: queue.SimpleQueue[Item] = queue.SimpleQueue()
    threading.Thread(target=journal, args=(path, items, loop), daemon=True).start()

    async def answer(ws: ServerConnection) -> None:
        version = OcppVersion((ws.subprotocol or "ocpp1.6").removeprefix("ocpp"))
        station = ws.request.path.rsplit("/", 1)[-1] if ws.request else ""
        try:
            async for data in ws:
                raw = data.encode() if isinstance(data, str) else data
                frame = orjson.loads(raw)
                schemas.validate_request(version, frame[2], frame[3])
                fut: asyncio.Future[None] = loop.create_future()
                items.put((station, frame[2], raw, fut))
                await fut
                await ws.send(orjson.dumps([3, frame[1], ANSWERS.get(frame[2], {})]).decode())
        except ConnectionClosed:
            pass

    async with serve(
        answer,
        "127.0.0.1",
        port,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
        compression=None,
        reuse_port=True,
    ):
        await asyncio.Future()


def worker(port: int, path: Path, ready: Any) -> None:
    async def run() -> None:
        task = asyncio.create_task(server(port, path))
        await asyncio.sleep(0.5)
        ready.release()
        await task

    asyncio.run(run())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-parts-") as tmp:
        ready = multiprocessing.Semaphore(0)
        procs = [
            multiprocessing.Process(
                target=worker, args=(args.port, Path(tmp) / f"w{i}.sqlite", ready), daemon=True
            )
            for i in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        # SIGTERM (the bench stopping this server) stops the workers too.
        signal.signal(signal.SIGTERM, lambda *_: exit(0))
        try:
            for _ in procs:
                ready.acquire()
            print("ready", flush=True)
            for proc in procs:
                proc.join()
        finally:
            for proc in procs:
                proc.terminate()
                proc.join(5)
