"""The store: one writer thread with group commit, and a reader thread.

A charger's message is answered only after what it carries is committed (DESIGN.md §2).
To afford an fsync per message at a thousand chargers, the writer takes every write that
is waiting, runs each in its own SAVEPOINT (a failing one rolls back alone), commits once,
and only then wakes the callers: one fsync for many replies.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from edge.domain.units import iso_utc
from edge.errors import EdgeError
from edge.store import damage, journal, room
from edge.store.codes import primary_code
from edge.store.schema import migrate

T = TypeVar("T")
log = structlog.get_logger("edge.store")

MAX_BATCH = 1000
_STOP = object()
# How often the writer looks at the disk's free space: to take the reserve again, and to
# see a full disk cleared (seconds; more often while it is full).
DISK_CHECK_S = 60.0
DISK_CHECK_FULL_S = 1.0
# Times a batch's writes that failed for want of room run again after room is made.
ROOM_TRIES = 3
# While the disk stays full, what is dropped to make room is logged at most this often.
DISK_LOG_S = 60.0

# An opened database: its connection, the outbox cap, whether a file marked damaged
# checked sound (Store.open).
_Opened = tuple[sqlite3.Connection, journal.OutboxCap, bool]
# One queued write: the function, its caller's future, and that caller's event loop.
_Op = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class StoreClosed(EdgeError):
    """A write was submitted after the store was closed."""


class StoreUnavailable(EdgeError):
    """The database file cannot be opened or written (a path, owner or permission)."""


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the journal's PRAGMAs (WAL, synchronous=FULL, foreign keys)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            factory=journal.JournalConnection,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # DESIGN.md §2: a reply that reached a charger survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Store:
    """The SQLite journal and outbox behind an async facade."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        cap: journal.OutboxCap,
        reserve: room.Reserve,
        checked_sound: bool = False,
    ) -> None:
        self._path = path
        self._conn = conn
        self.disk = room.DiskState(
            path,
            reserve,
            dropped=room.load_dropped(conn),
            set_aside=damage.remembered(conn),
        )
        self._disk_checked = time.monotonic()
        self._full_logged = -DISK_LOG_S  # the first full disk is logged at once
        self._unlogged: dict[str, int] = {}  # dropped since the last `store.full` line
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store-read")
        self._read_conn: sqlite3.Connection | None = None
        self._cap = cap
        self._closed = False
        self._batch_now = _now()
        self.on_commit: Callable[[int, float], None] | None = None
        # Called (from the writer thread) the first time a write finds the file damaged,
        # unless this start checked the file and found it sound: the daemon then restarts
        # so that the next start checks it and sets it aside (edge/store/damage.py).
        self.on_damaged: Callable[[], object] | None = None
        self.checked_sound = checked_sound
        self._thread = threading.Thread(target=self._run, name="edge-store-write", daemon=True)
        self._thread.start()

    @classmethod
    async def open(
        cls, path: str | Path, *, outbox_max_rows: int = 200_000, reserve_bytes: int = 0
    ) -> Store:
        """Open (creating and migrating as needed) the database file, and take its reserve
        of free space (edge/store/room.py) if `reserve_bytes`."""
        path = Path(path)
        reserve = room.Reserve(path, reserve_bytes)

        def opened() -> _Opened:
            """The connection, the outbox cap (its count reads every page of the outbox's
            table: a damaged one shows here), and whether a file marked damaged checked
            sound."""
            flagged = damage.flagged(path)
            conn = connect(path)
            try:
                applied = migrate(conn, path)
                cap = journal.OutboxCap(conn, outbox_max_rows)
                problem = damage.check(conn) if flagged else None
            except BaseException:
                conn.close()
                raise
            if problem is not None:
                conn.close()
                raise damage.Damaged(problem)
            sound = flagged
            if sound:
                log.info("store.checked", path=str(path), result="ok")
                damage.unflag(path)
            if applied:
                log.info("store.migrated", path=str(path), applied=applied)
            return conn, cap, sound

        def prepare() -> _Opened:
            try:
                return prepared()
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"{path}: cannot open the database ({exc}); check that its directory"
                    " exists and that the daemon's user (edge, under systemd) may write both"
                ) from exc

        def prepared() -> _Opened:
            try:
                conn, cap, sound = opened()
            except (sqlite3.DatabaseError, damage.Damaged) as exc:
                if not damage.is_damage(exc):
                    raise
                now = _now()
                kept = damage.set_aside(path, now)
                log.error(
                    "store.damaged",
                    path=str(path),
                    error=str(exc),
                    kept=str(kept),
                    hint=f"a new database is started; `sqlite3 {kept} .recover` may save"
                    " what the old one held",
                )
                conn, cap, sound = opened()
                damage.remember(conn, kept, str(exc), now)
            if reserve_bytes and not reserve.hold():
                log.warning(
                    "store.reserve.unavailable",
                    path=str(reserve.path),
                    reserve_bytes=reserve_bytes,
                    free_bytes=room.free_bytes(path),
                )
            return conn, cap, sound

        conn, cap, sound = await asyncio.to_thread(prepare)
        return cls(path, conn, cap, reserve, checked_sound=sound)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def close(self) -> None:
        """Finish every queued write, then close the files."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._reader.shutdown(wait=True)
        if self._read_conn is not None:
            self._read_conn.close()
        self._conn.close()

    async def record(self, event: Event) -> Recorded:
        """Journal an event and enqueue it for the cloud; returns after COMMIT."""
        return await self.write(lambda conn: journal.record(conn, event, self._batch_now))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer thread inside the next group commit; returns after COMMIT."""
        if self._closed:
            raise StoreClosed(f"{self._path}: the store is closed")
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
            batch: list[_Op] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if not batch:
                continue
            try:
                self._commit(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("store.writer.failed", batch=len(batch))
                self._wake(batch, [(False, exc)] * len(batch))

    def _commit(self, batch: list[_Op]) -> None:
        started = time.perf_counter()
        self._batch_now = _now()  # one clock reading per group commit
        outcomes = self._execute(batch)
        if self.on_commit is not None:
            try:
                self.on_commit(len(batch), time.perf_counter() - started)
            except Exception:  # metrics must never stop the writer
                log.exception("store.on_commit.failed")
        self._wake(batch, outcomes)
        # Every journaled event that is not a duplicate added one outbox record.
        enqueued = sum(
            1
            for ok, value in outcomes
            if ok and isinstance(value, Recorded) and not value.duplicate
        )
        if self._cap.added(enqueued):
            self._enforce_cap()
        if time.monotonic() - self._disk_checked >= (
            DISK_CHECK_FULL_S if self.disk.full else DISK_CHECK_S
        ):
            self._check_disk()

    def _wake(self, batch: list[_Op], outcomes: list[tuple[bool, Any]]) -> None:
        """Resolve the callers' futures: one wake-up of each event loop per batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for (_fn, fut, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, settled)

    def _execute(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction; (ok, result or exception) per op.

        First without a SAVEPOINT per op and with the outbox counters written once per
        station (the common case: nothing fails, three statements per meter value instead
        of six). If anything raises, the whole transaction is rolled back and the batch
        runs again, each op in its own SAVEPOINT, so that only the failing op fails.
        """
        conn = self._conn
        try:
            outcomes = self._execute_unguarded(batch)
            if self.disk.failing is not None:
                self._note_failures(outcomes)
            return outcomes
        except Exception:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            journal.forget_counters(conn)
        finally:
            if isinstance(conn, journal.JournalConnection):
                conn.deferred = None
        outcomes = self._execute_guarded(batch)
        for _ in range(ROOM_TRIES):
            full = [i for i, (ok, value) in enumerate(outcomes) if not ok and room.is_full(value)]
            if not full or not self._make_room():
                break
            # Only what failed for want of room runs again; the rest is committed.
            again = self._execute_guarded([batch[i] for i in full])
            for i, outcome in zip(full, again, strict=True):
                outcomes[i] = outcome
        self._note_failures(outcomes)
        return outcomes

    def _note_failures(self, outcomes: list[tuple[bool, Any]]) -> None:
        """Keep the store's own failures (not a write's bug) for status, until a batch
        commits without one; mark a damaged file for a full check at the next start."""
        disk = self.disk
        failed = next((v for ok, v in outcomes if not ok and _store_failure(v)), None)
        if failed is None:
            if disk.failing is not None:
                log.info("store.ok", failed_since=disk.failing["since"])
                disk.failing = None
            return
        now = _now()
        if disk.failing is None:
            disk.failing = {"error": str(failed), "since": iso_utc(now)}
        if damage.is_damage(failed) and damage.flag(self._path, str(failed), now):
            log.error(
                "store.damaged",
                path=str(self._path),
                error=str(failed),
                hint="restart edge: it checks the whole file at start and, if it is"
                " damaged, keeps it aside and starts a new one",
            )
            if self.on_damaged is not None and not self.checked_sound:
                try:
                    self.on_damaged()
                except Exception:  # the caller's problem must not stop the writer
                    log.exception("store.on_damaged.failed")

    def _execute_unguarded(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        conn = self._conn
        if isinstance(conn, journal.JournalConnection):
            conn.deferred = set()
        conn.execute("BEGIN IMMEDIATE")
        outcomes = [(True, fn(conn)) for fn, _fut, _loop in batch]
        journal.flush_counters(conn)
        conn.execute("COMMIT")
        return outcomes

    def _execute_guarded(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _fut, _loop in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = fn(conn)
                    conn.execute("RELEASE op")
                except Exception as exc:  # one failing op must not fail the batch
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (it may on SQLITE_FULL
                        # or an I/O error): the ops before this one are undone too.
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    journal.forget_counters(conn)
                    outcomes.append((False, exc))
                    continue
                outcomes.append((True, result))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The transaction itself failed (disk full, I/O error): nobody's write is durable.
            log.error("store.commit.failed", error=str(exc), batch=len(batch))
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            journal.forget_counters(conn)
            return [(False, exc)] * len(batch)
        return outcomes

    def _make_room(self) -> bool:
        """A write failed for want of room: give back the reserve, checkpoint, drop the
        oldest droppable rows (edge/store/room.py). False if nothing could be done."""
        disk = self.disk
        disk.full, disk.full_at = True, _now()
        released = disk.reserve.release()
        checkpointed = False
        with contextlib.suppress(sqlite3.Error):
            # Copies the WAL into the database file (the reserve's room lets the file grow),
            # so that the WAL is written from its start again instead of growing.
            busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            checkpointed = busy == 0 and 0 < frames == done
        try:
            dropped = room.make_room(self._conn)
        except sqlite3.Error as exc:
            log.error("store.full.no_room", error=str(exc), reserve_released=released)
            return released or checkpointed
        for table, n in dropped.items():
            if table == "outbox":
                self._cap.rows -= n
            else:
                disk.dropped[table] = disk.dropped.get(table, 0) + n
            self._unlogged[table] = self._unlogged.get(table, 0) + n
        now = time.monotonic()
        if released or now - self._full_logged >= DISK_LOG_S:
            # At most once a minute while the disk stays full, with what was dropped since.
            log.warning(
                "store.full",
                dropped=self._unlogged,
                reserve_released=released,
                free_bytes=room.free_bytes(self._path),
            )
            self._full_logged, self._unlogged = now, {}
        return bool(dropped) or released or checkpointed

    def _check_disk(self) -> None:
        """Take the reserve again, and see a full disk cleared, once there is room."""
        self._disk_checked = time.monotonic()
        disk = self.disk
        if not disk.reserve.held and disk.reserve.hold():
            log.info("store.reserve.held", path=str(disk.reserve.path))
        if disk.full and disk.room_again():
            disk.full = False
            self._full_logged = -DISK_LOG_S
            log.info("store.disk.recovered", free_bytes=room.free_bytes(self._path))

    def _enforce_cap(self) -> None:
        try:
            self._cap.enforce(self._conn)
        except sqlite3.Error as exc:
            log.error("outbox.thinning.failed", error=str(exc))


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        if fut.done():  # the caller was cancelled; its write is committed all the same
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _now() -> datetime:
    return datetime.now(UTC)


# SQLite's primary result codes that say the file or the disk failed, not the write.
_STORE_FAILURES = frozenset(
    (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    )
)


def _store_failure(value: object) -> bool:
    return primary_code(value) in _STORE_FAILURES
