"""A charger whose clock is wrong is named, and offered the time: its session times are
wrong by as much.

Chargers without a backed-up clock start at 1970 or at their build date after a power
cut, until they take the time from BootNotification or Heartbeat (OCPP 1.6 §4.2, §4.6).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge.config import parse_config
from edge.domain.events import ConnectorStatusChanged
from edge.domain.units import parse_time
from edge.service import hostclock
from edge.service.site import SiteService
from edge.state.registry import Registry, StationState, clock_text
from edge.store.writer import Store
from tests.conftest import StartSite
from tests.peer import BOOT_16, RawCharger
from tests.test_meters_daemon import api, edge_cli
from tests.wait import until

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_the_offset_is_the_largest_of_the_last_few_messages() -> None:
    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    st = StationState("CP1", configured=True)
    st.clock_seen(at(7200), at(0))
    assert st.clock_offset_s == 7200 and st.clock_off, "a clock ahead shows at once"
    # Within 10 s of the last sample nothing is taken (one sample per 10 s at most).
    st.clock_seen(at(5), at(5))
    assert st.clock_offset_s == 7200
    # A message the charger queued carries an older time: it does not look like a clock
    # behind while a newer message showed the clock right.
    st = StationState("CP2", configured=True)
    st.clock_seen(at(1), at(0))
    st.clock_seen(at(-3 * 3600), at(10))
    assert st.clock_offset_s == 1 and not st.clock_off


def test_a_clock_behind_shows_only_after_a_minute_of_messages() -> None:
    # After edge restarts, a charger sends what it queued meanwhile: old times, for a
    # while. Only a clock behind for longer than that is one.
    st = StationState("CP1", configured=True)
    behind = timedelta(hours=3)
    for s in range(0, 60, 10):  # 0 .. 50 s: could still be a queue
        received = T0 + timedelta(seconds=s)
        st.clock_seen(received - behind, received)
    assert st.clock_offset_s is None and not st.clock_off
    received = T0 + timedelta(seconds=60)
    assert st.clock_seen(received - behind, received)
    assert st.clock_offset_s == -10800 and st.clock_off
    # Given the time (BootNotification, Heartbeat), the next message tells afresh.
    st.clock_set()
    assert st.clock_seen(T0 + timedelta(seconds=70), T0 + timedelta(seconds=70))
    assert st.clock_offset_s == 0 and not st.clock_off


def test_a_long_queue_sent_after_an_outage_is_not_a_clock_behind() -> None:
    # An OCPP 1.6 charger that was cut off for hours sends what it queued one message at
    # a time, without saying it was queued; over a slow link that can take minutes. Its
    # times close in on the present faster than time passes: never a clock behind.
    st = StationState("CP1", configured=True)
    for s in range(0, 150, 10):
        received = T0 + timedelta(seconds=s)
        queued_at = T0 - timedelta(hours=3) + timedelta(seconds=s * 72)
        st.clock_seen(queued_at, received)
        assert not st.clock_off, s
    # Then live messages: the clock is right.
    st.clock_seen(T0 + timedelta(seconds=160), T0 + timedelta(seconds=160))
    assert st.clock_offset_s == 0
    # A clock that is behind stays behind by the same amount: named once a minute of
    # samples agree, even after such a queue.
    st = StationState("CP2", configured=True)
    for s in range(0, 50, 10):
        received = T0 + timedelta(seconds=s)
        st.clock_seen(T0 - timedelta(hours=5) + timedelta(seconds=s * 300), received)
    named = [
        s
        for s in range(50, 200, 10)
        if st.clock_seen(T0 + timedelta(seconds=s - 3600), T0 + timedelta(seconds=s))
    ]
    assert named == [120] and st.clock_offset_s == -3600
    # (120 s: 8 samples of 10 s after the last queued one, spanning 70 s.)


def test_samples_taken_before_the_controllers_clock_went_back_are_dropped() -> None:
    # A controller without a battery-backed clock runs ahead until NTP sets it back:
    # sampling must go on at once, not wait until its clock has caught up again.
    st = StationState("CP1", configured=True)
    st.clock_seen(T0 + timedelta(hours=5), T0 + timedelta(hours=5))
    assert st.clock_offset_s == 0
    back = T0 + timedelta(seconds=1)
    assert st.clock_seen(back + timedelta(hours=3), back), "sampled, and named ahead"
    assert st.clock_offset_s == 3 * 3600 and len(st.clock_samples) == 1


def test_the_offset_is_said_in_words_only_beyond_the_tolerance() -> None:
    assert clock_text(None) is None
    assert clock_text(-90) is None
    assert clock_text(7290) == "clock 2 h 1 min ahead"
    assert clock_text(-125) == "clock 2 min behind"
    assert clock_text(-(T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) == (
        "clock 20791 d 12 h behind"
    )


def _status(at: datetime) -> dict[str, object]:
    text = at.isoformat().replace("+00:00", "Z")
    return {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": text}


async def test_a_charger_whose_clock_is_off_is_named_until_it_takes_the_time(
    start_site: StartSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `edge doctor` runs as a process of its own and asks the kernel itself.
    kernel = hostclock.synchronized()
    # This controller's clock synchronized: the kernel's flag cannot be set both ways here.
    monkeypatch.setattr(hostclock, "synchronized", lambda: True)
    site = await start_site()
    config = site.config_path
    charger = await RawCharger.connect(site.url, "CP16")

    def ahead() -> dict[str, object]:
        return _status(datetime.now(UTC) + timedelta(hours=2, seconds=30))

    try:
        await charger.call("BootNotification", BOOT_16)
        with capture_logs() as logs:
            await charger.call("StatusNotification", ahead())
            off = next(e for e in logs if e["event"] == "ocpp.clock.off")
            # Edge offers it the time at once: a Heartbeat's answer carries it.
            trigger = await charger.next_call()
            assert trigger[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
            await charger.answer(trigger, {"status": "Accepted"})
            await until(lambda: any(e["event"] == "ocpp.clock.time_offered" for e in logs))
        assert off["station"] == "CP16" and abs(off["offset_s"] - 7230) <= 2
        # The line says whether this controller's own clock can be trusted (the kernel's
        # word: a Raspberry Pi without NTP starts from the time it last saved).
        assert off["controller_synchronized"] is True and off["time_offered"] is True

        # It sends the Heartbeat but keeps its clock: still named, and not asked again.
        await charger.call("Heartbeat", {})
        await charger.call("StatusNotification", ahead())
        await asyncio.sleep(0.3)
        assert charger.calls.empty()
        _, station = await api(site, "/api/v1/stations/CP16")
        assert abs(station["clock_offset_s"] - 7230) <= 2
        code, out = await edge_cli("stations", "--api", site.api)
        assert code == 0 and "(clock 2 h ahead)" in out, out
        code, out = await edge_cli("doctor", "--config", str(config), "--api", site.api)
        assert "station CP16: clock 2 h ahead of this controller's" in out, out
        assert "set its clock or NTP server on the charger" in out
        # Its own clock too: named by doctor and, when not synchronized, by status.
        _, status = await api(site, "/api/v1/status")
        assert status["clock_synchronized"] is True
        if kernel is not None:
            mark = "✓ clock synchronized (NTP)" if kernel else "✗ clock NOT synchronized"
            assert mark in out, out
        code, out = await edge_cli("status", "--api", site.api)
        assert code == 0 and "NOT synchronized" not in out, out

        # It takes the time from a Heartbeat's answer; its next message shows it right.
        with capture_logs() as logs:
            await charger.call("Heartbeat", {})
            await charger.call("StatusNotification", _status(datetime.now(UTC)))
            await until(lambda: any(e["event"] == "ocpp.clock.ok" for e in logs))
        _, station = await api(site, "/api/v1/stations/CP16")
        assert abs(station["clock_offset_s"]) <= 2
        code, out = await edge_cli("stations", "--api", site.api)
        assert "clock" not in out
    finally:
        await charger.close()


def _given(answer: list[object]) -> datetime:
    """The currentTime of a Heartbeat or BootNotification answer frame."""
    payload = answer[2]
    assert isinstance(payload, dict), answer
    return parse_time(payload["currentTime"])


async def test_an_unsynchronized_controller_does_not_set_a_charger_back(
    start_site: StartSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Raspberry Pi that restarted without reaching NTP runs from the time it last
    saved, behind the true time; a charger ahead of it keeps its clock."""
    synchronized = [False]
    monkeypatch.setattr(hostclock, "synchronized", lambda: synchronized[0])
    site = await start_site()
    charger = await RawCharger.connect(site.url, "CP16")
    ahead = timedelta(hours=2, seconds=30)

    def off_by(given: datetime) -> float:
        return (given - datetime.now(UTC)).total_seconds()

    try:
        await charger.call("BootNotification", BOOT_16)
        with capture_logs() as logs:
            await charger.call("StatusNotification", _status(datetime.now(UTC) + ahead))
            await asyncio.sleep(0.3)
        off = next(e for e in logs if e["event"] == "ocpp.clock.off")
        assert off["controller_synchronized"] is False and off["time_offered"] is False
        assert charger.calls.empty(), "no TriggerMessage: edge's time would set it back"
        # Its Heartbeat is answered with its own time, and so is the Boot after a reboot.
        for action, payload in (("Heartbeat", {}), ("BootNotification", BOOT_16)):
            given = _given(await charger.call(action, payload))
            assert abs(off_by(given) - ahead.total_seconds()) <= 3, (action, given)
        code, out = await edge_cli("doctor", "--config", str(site.config_path), "--api", site.api)
        assert (
            code == 1
            and (
                "station CP16: clock 2 h ahead of this controller's, whose own clock is not"
                " synchronized: edge does not set the charger's back"
            )
            in out
        ), out
        # Once this controller's clock is synchronized, it offers its time again at once.
        with capture_logs() as logs:
            synchronized[0] = True
            trigger = await charger.next_call()
        assert trigger[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
        assert any(
            e["event"] == "ocpp.clock.synchronized" and e["offering"] == ["CP16"] for e in logs
        )
        await charger.answer(trigger, {"status": "Accepted"})
        assert abs(off_by(_given(await charger.call("Heartbeat", {})))) <= 3
    finally:
        await charger.close()


async def test_a_charger_behind_an_unsynchronized_controller_is_still_given_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unsynchronized controller is behind the true time, never ahead: a charger behind
    it (one without a backed-up clock, at its build date) is nearer the truth with it."""
    monkeypatch.setattr(hostclock, "synchronized", lambda: False)
    now = [T0]
    store = await Store.open(tmp_path / "edge.sqlite")
    site = SiteService(parse_config(""), store, Registry([("CP1", False)]), lambda: now[0])
    offered: list[str] = []
    site.on_clock_off = offered.append
    behind = timedelta(days=400)
    try:
        for s in range(0, 70, 10):  # a clock behind is named once a minute of samples agree
            now[0] = T0 + timedelta(seconds=s)
            await site.record(
                ConnectorStatusChanged(
                    "CP1", now[0], 1, "Available", "NoError", now[0] - behind, {}
                )
            )
        assert offered == ["CP1"]
        assert site.time_for("CP1") == now[0]
        assert site.heartbeat("CP1") == now[0]
    finally:
        await store.close()
