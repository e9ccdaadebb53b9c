"""The store: one writer thread with group commit, and a reader thread.

A charger's message is answered only after what it carries is committed (DESIGN.md §2).
To afford an fsync per message at a thousand chargers, the writer takes every write that
is waiting, runs each in its own SAVEPOINT (a failing one rolls back alone), commits once,
and only then wakes the callers: one fsync for many replies.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edge.domain.events import Event, Recorded
from edge.store import journal
from edge.store.schema import migrate

T = TypeVar("T")
log = structlog.get_logger("edge.store")

MAX_BATCH = 1000
_STOP = object()


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the journal's PRAGMAs (WAL, synchronous=FULL)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Store:
    """The SQLite journal and outbox behind an async facade."""

    def __init__(self, path: Path, conn: sqlite3.Connection, outbox_max_rows: int) -> None:
        self._path = path
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store-read")
        self._read_conn: sqlite3.Connection | None = None
        self.journal = journal.Journal(conn, outbox_max_rows)
        self.on_commit: Callable[[int, float], None] | None = None
        self._batch_now = _now()
        self._thread = threading.Thread(target=self._run, name="edge-store-write", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, path: str | Path, *, outbox_max_rows: int = 200_000) -> Store:
        """Open (creating and migrating as needed) the database file."""
        path = Path(path)

        def prepare() -> sqlite3.Connection:
            conn = connect(path)
            applied = migrate(conn, path)
            if applied:
                log.info("store.migrated", path=str(path), applied=applied)
            return conn

        conn = await asyncio.to_thread(prepare)
        return cls(path, conn, outbox_max_rows)

    @property
    def path(self) -> Path:
        return self._path

    async def close(self) -> None:
        """Finish every queued write, then close the files."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._reader.shutdown(wait=True)
        if self._read_conn is not None:
            self._read_conn.close()
        self._conn.close()

    async def record(self, event: Event) -> Recorded:
        """Journal an event and enqueue it for the cloud; returns after COMMIT."""
        return await self.write(lambda conn: self.journal.record(event, self._batch_now))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer thread inside the next group commit; returns after COMMIT."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the read connection (WAL: it sees the last commit, never blocks writes)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._read_conn is None:
            self._read_conn = connect(self._path, readonly=True)
        return fn(self._read_conn)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[Any]) -> None:
        started = time.perf_counter()
        self._batch_now = _now()  # one clock reading per group commit
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN")
            for fn, _fut, _loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, fn(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # one failing op must not fail the batch
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The commit itself failed (disk full, I/O error): nobody's write is durable.
            log.error("store.commit.failed", error=str(exc), batch=len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.journal.forget_pending()
            outcomes = [(False, exc)] * len(batch)
        else:
            self.journal.committed()
        if self.on_commit is not None:
            self.on_commit(len(batch), time.perf_counter() - started)
        # One wake-up of each event loop per batch, not one per caller.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for (_fn, fut, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _now() -> datetime:
    return datetime.now(UTC)
