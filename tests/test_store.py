"""The store on a real SQLite file: durability, group commit, journal rules, outbox, auth."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.events import (
    ConnectorStatusChanged,
    MeterReading,
    MeterSample,
    MeterValuesReceived,
    StationBooted,
    StationConnected,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from edge.domain.station import OcppVersion, StationIdentity
from edge.service.daemon import PRUNE_ROWS
from edge.store import auth, queries, retention
from edge.store import outbox as outbox_mod
from edge.store.schema import MIGRATIONS, SchemaError, migrate
from edge.store.writer import Store, StoreClosed
from tests.conftest import StartSite
from tests.wait import until

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def energy(value: float, unit: str = "Wh", at: datetime = T0) -> tuple[MeterReading, ...]:
    samples = (
        MeterSample("Energy.Active.Import.Register", value * 10, unit, phase="L1"),
        MeterSample("Energy.Active.Import.Register", value, unit),
        MeterSample("Power.Active.Import", 7000.0, "W"),
    )
    return (MeterReading(at, samples),)


def start16(connector: int = 1, meter: float = 1000.0, station: str = "CP1") -> TransactionStarted:
    return TransactionStarted(station, T0, connector, "TAG", T0, meter, {"meterStart": meter})


def stop16(session_id: int, meter: float | None = 4000.0, minutes: int = 60) -> TransactionEnded:
    at = T0 + timedelta(minutes=minutes)
    return TransactionEnded("CP1", at, at, meter, "Local", {"meterStop": meter}, session_id)


def values16(session_id: int | None, wh: float, connector: int = 1) -> MeterValuesReceived:
    raw = {"connectorId": connector, "transactionId": session_id}
    return MeterValuesReceived("CP1", T0, connector, energy(wh), raw, session_id=session_id)


def update2(seq: int, wh: float | None = None, tx: str = "TX9") -> TransactionUpdated:
    readings = energy(wh) if wh is not None else ()
    raw = {"seqNo": seq, "transactionInfo": {"transactionId": tx}}
    return TransactionUpdated(
        "CP2", T0, tx, seq, True, "MeterValuePeriodic", raw, connector=1, readings=readings
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "edge.sqlite")
    yield s
    await s.close()


def db_rows(path: Path, sql: str, *args: Any) -> list[Any]:
    """Rows as an independent connection sees them (what survives the process)."""
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def outbox(path: Path) -> list[tuple[str | None, int, str]]:
    return db_rows(path, "SELECT station, seq, type FROM outbox ORDER BY id")


def outbox_data(path: Path, kind: str) -> list[dict[str, Any]]:
    rows = db_rows(path, "SELECT data FROM outbox WHERE type = ? ORDER BY id", kind)
    return [orjson.loads(d) for (d,) in rows]


# -- sessions -------------------------------------------------------------------------


async def test_a_16_session_from_start_to_stop(store: Store) -> None:
    sid = (await store.record(start16())).session_id
    assert sid is not None
    await store.record(values16(sid, 1500))
    await store.record(values16(sid, 2500))
    active = await store.read(lambda c: queries.get_session(c, sid))
    assert active is not None and active.energy_wh == 1500
    done = await store.record(stop16(sid))
    assert done.session_id == sid and not done.duplicate
    session = await store.read(lambda c: queries.get_session(c, sid))
    assert session is not None and session.status == "completed"
    assert session.energy_wh == 3000 and session.stop_reason == "Local"
    assert [t for _, _, t in outbox(store.path)] == [
        "transaction.started",
        "meter.values",
        "meter.values",
        "transaction.completed",
    ]
    [completed] = outbox_data(store.path, "transaction.completed")
    assert completed["session_id"] == sid and completed["raw"] == {"meterStop": 4000.0}
    assert db_rows(store.path, "SELECT count(*) FROM meter_values WHERE session_id = ?", sid) == [
        (2,)
    ]


async def test_a_stop_without_meter_value_uses_the_last_reading(store: Store) -> None:
    sid = (await store.record(start16(meter=0.0))).session_id or 0
    await store.record(values16(sid, 7.5))
    await store.record(MeterValuesReceived("CP1", T0, 1, energy(8.25, "kWh"), {}, session_id=sid))
    await store.record(stop16(sid, meter=None))
    session = await store.read(lambda c: queries.get_session(c, sid))
    assert session is not None and session.meter_stop_wh == 8250  # kWh converted to Wh


async def test_a_resent_start_gets_the_same_id_and_no_second_record(store: Store) -> None:
    first = await store.record(start16())
    again = await store.record(start16())
    assert again.session_id == first.session_id and again.duplicate
    other = await store.record(start16(meter=1001.0))  # a different start is a new session
    assert other.session_id != first.session_id
    assert len(outbox(store.path)) == 2


async def test_a_repeated_stop_is_a_duplicate(store: Store) -> None:
    sid = (await store.record(start16())).session_id or 0
    await store.record(stop16(sid))
    again = await store.record(stop16(sid))
    assert again.duplicate and again.session_id == sid
    assert [t for _, _, t in outbox(store.path)].count("transaction.completed") == 1


async def test_session_ids_are_never_reused(store: Store) -> None:
    sid = (await store.record(start16())).session_id
    await store.write(lambda c: c.execute("DELETE FROM sessions"))
    assert (await store.record(start16(meter=5.0))).session_id != sid


async def test_2x_events_out_of_order_make_one_session(store: Store) -> None:
    await store.record(update2(2, wh=200))  # arrives first: the session is created from it
    await store.record(
        TransactionStarted("CP2", T0, 1, "TAG", T0, 0.0, {}, transaction_id="TX9", seq_no=0)
    )
    [mid] = await store.read(lambda c: queries.list_sessions(c, active=True, limit=5))
    assert mid.seq_gaps == (1,) and mid.offline and mid.id_tag == "TAG"
    assert mid.energy_wh == 200
    await store.record(update2(1, wh=100))  # the late one closes the gap
    ended = TransactionEnded(
        "CP2", T0, T0, None, "Local", {}, transaction_id="TX9", seq_no=3, readings=energy(400)
    )
    rec = await store.record(ended)
    [done] = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert rec.session_id == done.id == mid.id
    assert done.seq_gaps == () and done.status == "completed" and done.energy_wh == 400
    assert done.offline, "offline is sticky once any event said so"


async def test_a_session_first_heard_of_by_a_queued_update_starts_at_its_time(
    store: Store,
) -> None:
    # After an outage a charger's queued Updated may arrive before its Started (or the
    # Started was lost). Until the Started comes, the charger's time of the first event
    # is the best start edge has; its own time of receipt could be hours late.
    queued_at = T0 - timedelta(hours=2)
    raw = {"timestamp": queued_at.isoformat(), "seqNo": 4}
    update = TransactionUpdated("CP2", T0, "TX7", 4, True, "MeterValuePeriodic", raw, connector=1)
    sid = (await store.record(update)).session_id or 0
    session = await store.read(lambda c: queries.get_session(c, sid))
    assert session is not None and session.started_at == queued_at


async def test_a_2x_start_after_its_end_keeps_the_session_completed(store: Store) -> None:
    ended = TransactionEnded("CP2", T0, T0, 900.0, "EVDisconnected", {}, transaction_id="TX1")
    await store.record(ended)
    started = TransactionStarted("CP2", T0, 2, "TAG", T0, 100.0, {}, transaction_id="TX1")
    await store.record(started)
    [s] = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert s.status == "completed" and s.connector == 2 and s.energy_wh == 800


async def test_a_reused_2x_transaction_id_starts_a_new_session(store: Store) -> None:
    # OCPP 2.0.1 Part 1 §7.3 wants ids unique per station; some chargers count again
    # from 1 after a reset. The second transaction must not fold into the first.
    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    def start(minutes: int, meter: float) -> TransactionStarted:
        return TransactionStarted(
            "CP2", at(minutes), 1, "TAG", at(minutes), meter, {}, transaction_id="1", seq_no=0
        )

    def update(minutes: int, seq: int, wh: float) -> TransactionUpdated:
        raw = {"timestamp": at(minutes).isoformat(), "seqNo": seq}
        return TransactionUpdated(
            "CP2", at(90), "1", seq, True, "MeterValuePeriodic", raw, 1, readings=energy(wh)
        )

    def end(minutes: int, meter: float) -> TransactionEnded:
        return TransactionEnded(
            "CP2", at(minutes), at(minutes), meter, "Local", {}, transaction_id="1", seq_no=9
        )

    first = (await store.record(start(0, 1000.0))).session_id
    assert (await store.record(end(60, 3000.0))).session_id == first
    second = await store.record(start(120, 3000.0))
    assert second.session_id != first and second.active
    # A late event of the first (queued before its end) still goes to the first.
    assert (await store.record(update(30, 1, 2000.0))).session_id == first
    assert (await store.record(update(150, 1, 3500.0))).session_id == second.session_id
    assert (await store.record(end(180, 4000.0))).session_id == second.session_id
    again = await store.record(end(180, 4000.0))
    assert again.duplicate and again.session_id == second.session_id
    sessions = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert [(s.id, s.status, s.energy_wh) for s in sessions] == [
        (second.session_id, "completed", 1000.0),
        (first, "completed", 2000.0),
    ]


async def test_a_stop_for_an_unknown_session_is_kept_once(store: Store) -> None:
    rec = await store.record(stop16(777))
    again = await store.record(stop16(777))
    assert again.duplicate and again.session_id == rec.session_id
    ended = TransactionEnded("CP2", T0, T0, 10.0, "Local", {}, transaction_id="NEVER-SEEN")
    rec2 = await store.record(ended)
    kept = await store.read(lambda c: queries.list_sessions(c, active=False, limit=5))
    assert {s.id for s in kept} == {rec.session_id, rec2.session_id}
    notes = [n for (n,) in db_rows(store.path, "SELECT notes FROM sessions ORDER BY id")]
    assert "777" in notes[0] and "NEVER-SEEN" in notes[1]
    assert [t for _, _, t in outbox(store.path)] == ["transaction.completed"] * 2


async def test_transaction_id_minus_one_refers_to_the_active_session(store: Store) -> None:
    # OCPP 1.6 errata §3.18: the charger never got StartTransaction.conf, so it sends the
    # transaction's later messages with transactionId -1.
    sid = (await store.record(start16(connector=2))).session_id
    values = await store.record(values16(-1, 2500, connector=2))
    assert values.session_id == sid
    stop = await store.record(stop16(-1, 4000.0))
    assert stop.session_id == sid and not stop.duplicate
    again = await store.record(stop16(-1, 4000.0))
    assert again.duplicate and again.session_id == sid
    [s] = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert (s.id, s.status, s.energy_wh) == (sid, "completed", 3000)


async def test_transaction_id_minus_one_is_not_guessed_between_two_sessions(
    store: Store,
) -> None:
    first = (await store.record(start16(connector=1))).session_id
    second = (await store.record(start16(connector=2))).session_id
    stop = await store.record(stop16(-1))
    assert stop.session_id not in (first, second)
    active = await store.read(lambda c: queries.list_sessions(c, active=True, limit=5))
    assert {s.id for s in active} == {first, second}


async def test_meter_values_find_their_session(store: Store) -> None:
    sid = (await store.record(start16(connector=2))).session_id
    found = await store.record(values16(None, 1200, connector=2))  # 1.6 without transactionId
    assert found.session_id == sid
    main_meter = await store.record(values16(None, 99, connector=0))
    assert main_meter.session_id is None
    foreign = await store.record(
        MeterValuesReceived("CP9", T0, 2, energy(5), {}, session_id=sid)
    )  # another station's transactionId
    assert foreign.session_id is None
    session = await store.read(lambda c: queries.get_session(c, sid or 0))
    assert session is not None and session.energy_wh == 200


# -- outbox ---------------------------------------------------------------------------


async def test_outbox_seq_counts_per_station_and_for_the_gateway(store: Store) -> None:
    for station in ("A", "B", "A"):
        await store.record(StationConnected(station, OcppVersion.V16, T0))
    await store.record(StationNotified(None, T0, "gateway.started", "-", {}))  # type: ignore[arg-type]
    await store.record(
        StationBooted("A", T0, StationIdentity("V", "M", "1.0", "S"), "Accepted", {"x": 1})
    )
    await store.record(ConnectorStatusChanged("A", T0, 1, "Available", "NoError", T0, {}))
    assert outbox(store.path) == [
        ("A", 1, "station.connected"),
        ("B", 1, "station.connected"),
        ("A", 2, "station.connected"),
        (None, 1, "gateway.started"),
        ("A", 3, "station.boot"),
        ("A", 4, "station.status"),
    ]
    ids = [i for (i,) in db_rows(store.path, "SELECT record_id FROM outbox ORDER BY id")]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    # Time-ordered: the later record's millisecond prefix is never smaller.
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


async def test_outbox_rows_commit_with_the_journal_or_not_at_all(store: Store) -> None:
    unencodable = TransactionStarted("CP1", T0, 1, "TAG", T0, 1.0, {"x": object()})
    with pytest.raises(TypeError):
        await store.record(unencodable)  # the session row was written before the outbox failed
    assert db_rows(store.path, "SELECT count(*) FROM sessions") == [(0,)]
    await store.record(StationConnected("CP1", OcppVersion.V16, T0))
    assert outbox(store.path) == [("CP1", 1, "station.connected")], "no seq was lost"


async def test_outbox_ids_only_grow_even_after_every_row_was_delivered(store: Store) -> None:
    # The uplink reads "after the last id it read": a reused id would be passed over.
    await store.record(StationConnected("CP1", OcppVersion.V16, T0))
    await store.record(StationConnected("CP2", OcppVersion.V16, T0))
    (first, _), (last, _) = db_rows(store.path, "SELECT id, seq FROM outbox ORDER BY id")
    assert await store.write(lambda c: outbox_mod.delivered(c, [first, last])) == 2
    await store.record(StationConnected("CP1", OcppVersion.V16, T0))
    assert db_rows(store.path, "SELECT id, seq FROM outbox") == [(last + 1, 2)]


async def test_a_record_is_on_disk_when_it_returns(store: Store) -> None:
    rec = await store.record(start16())
    assert db_rows(store.path, "SELECT id FROM sessions") == [(rec.session_id,)]
    assert outbox(store.path) == [("CP1", 1, "transaction.started")]


async def test_a_failing_write_does_not_fail_its_batch(store: Store) -> None:
    batches: list[int] = []
    store.on_commit = lambda n, _s: batches.append(n)
    inside, gate = threading.Event(), threading.Event()

    def hold(_c: sqlite3.Connection) -> None:
        inside.set()
        gate.wait(5)

    held = asyncio.ensure_future(store.write(hold))
    assert await asyncio.to_thread(inside.wait, 5)
    ops = [
        asyncio.ensure_future(store.record(start16(1))),
        asyncio.ensure_future(store.write(lambda c: c.execute("bad sql"))),
        asyncio.ensure_future(store.record(start16(2))),
    ]
    await asyncio.sleep(0)  # let each op reach the queue while the writer is held
    gate.set()
    await held
    results = await asyncio.gather(*ops, return_exceptions=True)
    assert batches == [1, 3], "the three ops shared one commit"
    assert isinstance(results[1], sqlite3.OperationalError)
    assert db_rows(store.path, "SELECT count(*) FROM sessions") == [(2,)]
    assert [seq for _, seq, _ in outbox(store.path)] == [1, 2]
    assert db_rows(store.path, "SELECT next FROM outbox_seq") == [(3,)], "the counter is on disk"


async def test_concurrent_records_share_commits(store: Store) -> None:
    batches: list[int] = []
    store.on_commit = lambda n, _s: batches.append(n)
    await asyncio.gather(*(store.record(start16(i)) for i in range(1, 201)))
    assert sum(batches) == 200 and len(batches) < 200
    # The per-station counter is written once per commit, and it is right on disk.
    assert db_rows(store.path, "SELECT next FROM outbox_seq") == [(201,)]
    assert [seq for _, seq, _ in outbox(store.path)] == list(range(1, 201))


async def test_thinning_keeps_starts_stops_and_each_sessions_last_value(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.sqlite", outbox_max_rows=100)
    a = (await store.record(start16(1))).session_id or 0
    b = (await store.record(start16(2))).session_id or 0
    await asyncio.gather(*(store.record(values16(a, wh)) for wh in range(5)))
    for chunk in range(5):  # session b alone pushes the outbox past its cap
        await asyncio.gather(*(store.record(values16(b, 30 * chunk + i)) for i in range(30)))
    await store.record(stop16(a))
    stats = await store.read(lambda c: queries.outbox_stats(c, T0))
    await store.close()
    rows = db_rows(store.path, "SELECT type, session_id, data FROM outbox ORDER BY id")
    types = [t for t, _, _ in rows]
    assert len(rows) <= 100 and stats["thinned"] == 158 - len(rows) > 0
    assert types[:2] == ["transaction.started"] * 2 and types[-1] == "transaction.completed"
    kept_a = [(t, orjson.loads(d).get("energy_wh")) for t, sid, d in rows if sid == a]
    assert kept_a[-2:] == [("meter.values", 4.0), ("transaction.completed", None)]


# -- schema ---------------------------------------------------------------------------


async def test_reopening_applies_nothing_twice_and_refuses_newer_files(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    store = await Store.open(path)
    await store.record(start16())
    await store.close()
    store = await Store.open(path)
    assert len(await store.read(queries.active_sessions)) == 1
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(SchemaError) as refused:
        await Store.open(path)
    message = str(refused.value)
    assert str(path) in message and f"version {len(MIGRATIONS) + 1}" in message
    assert f"({len(MIGRATIONS)})" in message


def test_migrations_apply_only_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    newer = (*MIGRATIONS, "CREATE TABLE extra (note TEXT DEFAULT 'a;b');")
    assert migrate(conn, path) == len(MIGRATIONS)
    assert migrate(conn, path, newer) == 1  # CREATE TABLE would fail if run twice
    assert migrate(conn, path, newer) == 0
    broken = (*newer, "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, path, broken)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(newer),)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()


def _migrated_from(
    tmp_path: Path, version: int, before: Callable[[sqlite3.Connection], object]
) -> sqlite3.Connection:
    """A database an older edge left at schema `version`, with what `before` wrote in it,
    brought to the newest schema."""
    path = tmp_path / "edge.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, MIGRATIONS[:version])
    before(conn)
    assert migrate(conn, path) == len(MIGRATIONS) - version
    return conn


def test_meter_values_keep_their_rows_when_their_session_index_goes(tmp_path: Path) -> None:
    conn = _migrated_from(
        tmp_path,
        5,
        lambda c: c.execute(
            "INSERT INTO meter_values (id, station, connector, session_id, timestamp, data,"
            " received_at) VALUES (9, 'CP1', 1, 3, 't', x'5b5d', '2026-12-04T10:00:00.000Z')"
        ),
    )
    assert conn.execute("SELECT id, session_id FROM meter_values").fetchall() == [(9, 3)]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "meter_values_session" not in indexes and "meter_values_received" in indexes
    conn.close()


def test_the_outbox_keeps_its_rows_and_ids_when_its_ids_become_never_reused(
    tmp_path: Path,
) -> None:
    insert = (
        "INSERT INTO outbox (id, record_id, station, seq, type, time, data, created_at)"
        " VALUES (?, ?, 'CP1', ?, 'station.status', 't', x'7b7d', 't')"
    )
    conn = _migrated_from(tmp_path, 3, lambda c: c.execute(insert, (7, "r7", 4)))
    conn.execute("DELETE FROM outbox")
    conn.execute(insert, (None, "r8", 5))
    assert conn.execute("SELECT id, record_id FROM outbox").fetchall() == [(8, "r8")]
    conn.close()


def test_sessions_keep_their_rows_and_ids_when_transaction_ids_may_repeat(
    tmp_path: Path,
) -> None:
    insert = (
        "INSERT INTO sessions (id, station, connector, transaction_id, started_at, status,"
        " created_at, updated_at) VALUES (?, 'CP2', 1, ?, 't', 'completed', 't', 't')"
    )

    def before(c: sqlite3.Connection) -> None:
        c.execute(insert, (3, "1"))
        c.execute(insert, (9, "2"))
        c.execute("DELETE FROM sessions WHERE id = 9")  # the sequence stays at 9

    conn = _migrated_from(tmp_path, 4, before)
    conn.execute(insert, (None, "1"))  # the same transaction id again: allowed now
    rows = conn.execute("SELECT id, transaction_id FROM sessions ORDER BY id").fetchall()
    assert rows == [(3, "1"), (10, "1")], "rows kept, and no id handed out twice"
    conn.close()


# -- lifecycle ------------------------------------------------------------------------


async def test_close_finishes_queued_writes_then_refuses_more(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.sqlite")
    pending = [asyncio.ensure_future(store.record(start16(i))) for i in range(1, 51)]
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    assert all(r.session_id for r in await asyncio.gather(*pending))
    assert db_rows(store.path, "SELECT count(*) FROM sessions") == [(50,)]
    with pytest.raises(StoreClosed):
        await store.record(start16())


# -- queries --------------------------------------------------------------------------


async def test_queries_list_sessions_stations_and_connectors(store: Store) -> None:
    s1 = (await store.record(start16(1))).session_id or 0
    await store.record(start16(2, station="CP2"))
    await store.record(stop16(s1))
    await store.record(StationConnected("CP1", OcppVersion.V201, T0))
    await store.record(ConnectorStatusChanged("CP1", T0, 1, "Charging", None, None, {}))
    newest = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert [s.station for s in newest] == ["CP2", "CP1"]
    done = await store.read(lambda c: queries.list_sessions(c, active=False, limit=5))
    assert [s.id for s in done] == [s1]
    one = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5, station="CP2"))
    assert [s.station for s in one] == ["CP2"]
    [station] = await store.read(queries.list_stations)
    assert station["id"] == "CP1" and station["connected"] and station["ocpp_version"] == "2.0.1"
    assert await store.read(queries.connector_statuses) == {"CP1": {1: "Charging"}}
    stats = await store.read(lambda c: queries.outbox_stats(c, datetime.now(UTC)))
    assert stats["backlog"] == 5 and stats["thinned"] == 0 and stats["oldest_age_s"] < 60


# -- auth -----------------------------------------------------------------------------


async def test_local_list_and_cache(store: Store) -> None:
    expiry = datetime(2027, 1, 1, tzinfo=UTC)
    entry = AuthEntry("T1", AuthStatus.BLOCKED, expiry, "P")
    await store.write(lambda c: auth.put_tag(c, entry, "api"))
    await store.write(lambda c: auth.cache_put(c, AuthEntry("X", AuthStatus.ACCEPTED), T0))
    local, cached = await store.read(lambda c: auth.get_auth(c, "T1"))
    assert local == entry and cached is None
    assert (await store.read(lambda c: auth.get_auth(c, "X"))) == (
        None,
        AuthEntry("X", AuthStatus.ACCEPTED),
    )
    [tag] = await store.read(auth.list_tags)
    assert tag == {
        "id_tag": "T1",
        "status": "Blocked",
        "expiry": "2027-01-01T00:00:00.000Z",
        "parent_id_tag": "P",
        "source": "api",
    }
    version = await store.read(auth.local_list_version)
    assert await store.write(lambda c: auth.delete_tag(c, "T1"))
    assert not await store.write(lambda c: auth.delete_tag(c, "T1"))
    assert await store.read(auth.local_list_version) == version + 1
    with pytest.raises(ValueError):
        await store.write(lambda c: auth.put_tag(c, entry, "cloud"))


async def test_config_tags_replace_config_entries_only(store: Store) -> None:
    await store.write(lambda c: auth.put_tag(c, AuthEntry("API1", AuthStatus.ACCEPTED), "api"))
    first = [AuthEntry("C1", AuthStatus.ACCEPTED), AuthEntry("C2", AuthStatus.BLOCKED)]
    assert await store.write(lambda c: auth.sync_config_tags(c, first))
    version = await store.read(auth.local_list_version)
    assert not await store.write(lambda c: auth.sync_config_tags(c, first))
    assert await store.read(auth.local_list_version) == version, "a restart changes nothing"
    await store.write(lambda c: auth.sync_config_tags(c, first[:1]))
    tags = await store.read(auth.list_tags)
    assert [(t["id_tag"], t["source"]) for t in tags] == [("API1", "api"), ("C1", "config")]
    assert await store.read(auth.local_list_version) == version + 1


# -- retention ------------------------------------------------------------------------


async def test_retention_prunes_old_journal_rows_but_keeps_sessions(store: Store) -> None:
    sid = (await store.record(start16())).session_id
    await store.record(values16(sid, 1))
    await store.record(StationConnected("CP1", OcppVersion.V16, T0))
    with sqlite3.connect(store.path) as db:  # age the rows
        db.execute("UPDATE meter_values SET received_at = '2020-01-01T00:00:00.000Z'")
        db.execute("UPDATE events SET time = '2020-01-01T00:00:00.000Z'")
    pruned = await store.write(lambda c: retention.prune(c, T0 - timedelta(days=90), T0))
    assert pruned["meter_values"] == 1 and pruned["events"] == 1
    assert await store.read(lambda c: queries.get_session(c, sid or 0)) is not None
    assert len(outbox(store.path)) == 3, "undelivered records are not the journal's to prune"


async def test_session_energy_uses_the_outlet_register_not_the_inlet(store: Store) -> None:
    sid = (await store.record(start16(meter=1000.0))).session_id
    both = (
        MeterReading(
            T0,
            (
                MeterSample("Energy.Active.Import.Register", 1500.0, "Wh", location="Outlet"),
                MeterSample("Energy.Active.Import.Register", 9.9, "kWh", location="Inlet"),
            ),
        ),
    )
    await store.record(MeterValuesReceived("CP1", T0, 1, both, {}, session_id=sid))
    session = await store.read(lambda c: queries.get_session(c, sid or 0))
    assert session is not None and session.energy_wh == 500.0


async def test_retention_deletes_in_short_transactions_until_nothing_is_left(
    start_site: StartSite, tmp_path: Path
) -> None:
    # After retention_days was lowered, say: far more rows than one transaction should
    # hold (every charger's reply waits for the transaction in progress).
    db = tmp_path / "edge.sqlite"
    s = await Store.open(db)
    await s.close()
    old = "2020-01-01T00:00:00.000Z"
    rows = 2 * PRUNE_ROWS + 123
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO meter_values (station, connector, data, received_at)"
            " VALUES ('CP1', 1, '[]', ?)",
            [(old,)] * rows,
        )
        conn.execute(
            "INSERT INTO meter_values (station, connector, data, received_at)"
            " VALUES ('CP1', 1, '[]', '2999-01-01T00:00:00.000Z')"
        )
    conn.close()
    with capture_logs() as logs:
        site = await start_site()  # prunes at start
        await until(lambda: any(e["event"] == "retention.pruned" for e in logs))
    [pruned] = [e for e in logs if e["event"] == "retention.pruned"]
    assert pruned["meter_values"] == rows, pruned
    assert db_rows(site.db, "SELECT count(*) FROM meter_values") == [(1,)], "the young row stays"
    # One chunk at a time: the largest transaction held PRUNE_ROWS rows of a table.
    assert pruned["chunks"] == 3, pruned
