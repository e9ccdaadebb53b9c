"""The store on a real SQLite file: durability, group commit, journal rules, outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.events import (
    MeterReading,
    MeterSample,
    MeterValuesReceived,
    StationConnected,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from edge.domain.station import OcppVersion
from edge.store import auth, queries
from edge.store.schema import MIGRATIONS, SchemaError
from edge.store.writer import Store

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def energy(wh: float, at: datetime = T0) -> tuple[MeterReading, ...]:
    return (MeterReading(at, (MeterSample("Energy.Active.Import.Register", wh, "Wh"),)),)


def start16(connector: int = 1, meter: float = 1000.0) -> TransactionStarted:
    return TransactionStarted("CP1", T0, connector, "TAG", T0, meter, {"meterStart": meter})


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = await Store.open(tmp_path / "edge.sqlite", outbox_max_rows=1000)
    yield s
    await s.close()


def outbox(path: Path) -> list[tuple[str | None, int, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT station, seq, type FROM outbox ORDER BY id").fetchall()


async def test_a_16_session_from_start_to_stop(store: Store) -> None:
    started = await store.record(start16())
    sid = started.session_id
    assert sid is not None
    await store.record(MeterValuesReceived("CP1", T0, 1, energy(1500), {}, session_id=sid))
    await store.record(
        TransactionEnded("CP1", T0, T0 + timedelta(hours=1), 4000, "Local", {}, session_id=sid)
    )
    session = await store.read(lambda c: queries.get_session(c, sid))
    assert session is not None and session.status == "completed"
    assert session.energy_wh == 3000
    assert [t for _, _, t in outbox(store.path)] == [
        "transaction.started",
        "meter.values",
        "transaction.completed",
    ]


async def test_a_resent_start_is_the_same_session_and_not_enqueued_twice(store: Store) -> None:
    first = await store.record(start16())
    again = await store.record(start16())
    assert again.session_id == first.session_id and again.duplicate
    assert len(outbox(store.path)) == 1


async def test_2x_events_out_of_order_make_one_session(store: Store) -> None:
    def upd(seq: int) -> TransactionUpdated:
        return TransactionUpdated(
            "CP2", T0, "TX9", seq, True, "MeterValuePeriodic", {}, readings=energy(100 * seq)
        )

    await store.record(upd(2))  # arrives first: the session is created from it
    await store.record(
        TransactionStarted("CP2", T0, 1, "TAG", T0, 0.0, {}, transaction_id="TX9", seq_no=0)
    )
    mid = await store.read(lambda c: queries.list_sessions(c, active=True, limit=5))
    assert len(mid) == 1 and mid[0].seq_gaps == (1,) and mid[0].offline
    await store.record(upd(1))
    await store.record(
        TransactionEnded(
            "CP2", T0, T0, None, "Local", {}, transaction_id="TX9", seq_no=3, readings=energy(400)
        )
    )
    [done] = await store.read(lambda c: queries.list_sessions(c, active=None, limit=5))
    assert done.seq_gaps == () and done.status == "completed" and done.energy_wh == 400


async def test_a_stop_for_an_unknown_transaction_is_kept(store: Store) -> None:
    rec = await store.record(TransactionEnded("CP1", T0, T0, 500, "Local", {}, session_id=777))
    session = await store.read(lambda c: queries.get_session(c, rec.session_id or 0))
    assert session is not None and session.status == "completed"


async def test_outbox_seq_counts_per_station_and_for_the_gateway(store: Store) -> None:
    for station in ("A", "B", "A"):
        await store.record(StationConnected(station, OcppVersion.V16, T0))
    await store.record(StationNotified(None, T0, "gateway.started", "-", {}))  # type: ignore[arg-type]
    assert outbox(store.path) == [
        ("A", 1, "station.connected"),
        ("B", 1, "station.connected"),
        ("A", 2, "station.connected"),
        (None, 1, "gateway.started"),
    ]


async def test_a_record_is_on_disk_when_it_returns(store: Store) -> None:
    rec = await store.record(start16())
    with sqlite3.connect(store.path) as db:  # an independent connection
        assert db.execute("SELECT id FROM sessions").fetchall() == [(rec.session_id,)]


async def test_a_failing_write_does_not_fail_its_batch(store: Store) -> None:
    results = await asyncio.gather(
        store.record(start16(1)),
        store.write(lambda c: c.execute("INSERT INTO nowhere VALUES (1)")),
        store.record(start16(2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.OperationalError)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == (2,)
        assert [s for (s,) in db.execute("SELECT seq FROM outbox ORDER BY id")] == [1, 2]


async def test_concurrent_records_share_commits(store: Store) -> None:
    batches: list[int] = []
    store.on_commit = lambda n, _s: batches.append(n)
    await asyncio.gather(*(store.record(start16(i)) for i in range(1, 201)))
    assert sum(batches) == 200 and len(batches) < 200


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
    with pytest.raises(SchemaError, match="newer than this edge knows"):
        await Store.open(path)


async def test_thinning_keeps_starts_stops_and_each_sessions_last_value(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "edge.sqlite", outbox_max_rows=1000)
    sid = (await store.record(start16())).session_id
    for i in range(1200):
        await store.record(MeterValuesReceived("CP1", T0, 1, energy(1000 + i), {}, session_id=sid))
    await store.record(TransactionEnded("CP1", T0, T0, 9000, "Local", {}, session_id=sid))
    rows = outbox(store.path)
    stats = await store.read(lambda c: queries.outbox_stats(c, T0))
    await store.close()
    types = [t for _, _, t in rows]
    assert len(rows) <= 1000 and stats["thinned"] > 0
    assert types[0] == "transaction.started" and types[-1] == "transaction.completed"
    with sqlite3.connect(tmp_path / "edge.sqlite") as db:
        last = db.execute("SELECT max(id) FROM outbox WHERE type = 'meter.values'").fetchone()[0]
        assert last is not None


async def test_local_list_and_cache(store: Store) -> None:
    entry = AuthEntry("T1", AuthStatus.BLOCKED, None, "P")
    await store.write(lambda c: auth.put_tag(c, entry, "api"))
    await store.write(lambda c: auth.sync_config_tags(c, [AuthEntry("C1", AuthStatus.ACCEPTED)]))
    await store.write(lambda c: auth.cache_put(c, AuthEntry("X", AuthStatus.ACCEPTED), T0))
    local, cached = await store.read(lambda c: auth.get_auth(c, "T1"))
    assert local == entry and cached is None
    tags = await store.read(auth.list_tags)
    assert [(t["id_tag"], t["source"]) for t in tags] == [("C1", "config"), ("T1", "api")]
    assert (await store.read(lambda c: auth.get_auth(c, "X")))[1] is not None
    assert await store.write(lambda c: auth.delete_tag(c, "T1"))
    assert not await store.write(lambda c: auth.delete_tag(c, "T1"))
    assert await store.read(auth.local_list_version) >= 3


async def test_retention_prunes_old_journal_rows_but_keeps_sessions(store: Store) -> None:
    from edge.store import retention

    sid = (await store.record(start16())).session_id
    await store.record(MeterValuesReceived("CP1", T0, 1, energy(1), {}, session_id=sid))
    await store.record(StationConnected("CP1", OcppVersion.V16, T0))
    with sqlite3.connect(store.path) as db:  # age the rows
        db.execute("UPDATE meter_values SET received_at = '2020-01-01T00:00:00.000Z'")
        db.execute("UPDATE events SET time = '2020-01-01T00:00:00.000Z'")
    pruned = await store.write(lambda c: retention.prune(c, T0 - timedelta(days=90), T0))
    assert pruned["meter_values"] == 1 and pruned["events"] == 1
    assert await store.read(lambda c: queries.get_session(c, sid or 0)) is not None
    assert len(outbox(store.path)) == 3, "undelivered records are not the journal's to prune"
