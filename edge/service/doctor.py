"""`edge doctor`: commissioning checks an installer runs before leaving the site."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge.config import Config
from edge.ocpp.refusals import refusal_text, refusals_of
from edge.service import hostclock
from edge.state.registry import clock_text, keeps_own_time
from edge.store import room

Check = tuple[bool, str]


def load_checks(config: Config) -> Iterator[Check]:
    """Load balancing needs something to measure the load with (DESIGN.md §3)."""
    load = config.load
    if load.grid_limit_a is None:
        if config.circuits:
            yield True, f"load balancing: {len(config.circuits)} circuits, no grid limit"
        return
    measured = [m.id for m in config.meters if m.role in ("grid", "building")]
    if not measured:
        yield (
            False,
            f"load balancing: grid_limit_a = {load.grid_limit_a:g} A but no meter with role "
            f"'grid' or 'building': every session stays at the fail-safe "
            f"{load.failsafe_current_a:g} A; add a [[meters]] entry",
        )
        return
    yield (
        True,
        f"load balancing: {load.grid_limit_a:g} A per phase less {load.margin_a:g} A, "
        f"measured by {measured[0]}, {load.strategy} sharing",
    )


def run_checks(config: Config, api: Any) -> Iterator[Check]:
    """Each check as (ok, one line saying what was found and what to do)."""
    from edge.api.client import ApiError, DaemonUnreachable

    yield True, f"config valid ({len(config.stations)} stations, {len(config.meters)} meters)"
    yield from load_checks(config)
    yield from _clock()
    try:
        ready = api.get("/health/ready")
        stations = {s["id"]: s for s in api.get("/api/v1/stations")}
        status = api.get("/api/v1/status")
        refused = status["stations"].get("refused") or []
        uplink = api.get("/api/v1/uplink")
    except DaemonUnreachable as exc:
        yield False, f"daemon: {exc}; start it with `systemctl start edge` or `edge run`"
        yield from disk_checks(config, None)
        # The meters can still be read: nothing else holds their bus.
        yield from meter_checks(config, _direct_reads(config))
        return
    except ApiError as exc:
        yield False, f"daemon answered {exc.status}: {exc.message}"
        return
    yield bool(ready.get("ready")), f"daemon ready: {ready}"
    yield from disk_checks(config, status.get("store"))
    for st in config.stations:
        seen = stations.get(st.id, {})
        if seen.get("connected"):
            yield (
                True,
                (
                    f"station {st.id}: connected, OCPP {seen.get('ocpp_version')}, "
                    f"{seen.get('vendor') or '?'} {seen.get('model') or ''}".rstrip()
                ),
            )
            offset = seen.get("clock_offset_s")
            clock = clock_text(offset)
            if clock and keeps_own_time(offset, status.get("clock_synchronized")):
                yield (
                    False,
                    f"station {st.id}: {clock} of this controller's, whose own clock is not"
                    " synchronized: edge does not set the charger's back; give this"
                    " controller an NTP server it can reach",
                )
            elif clock:
                yield (
                    False,
                    f"station {st.id}: {clock} of this controller's, so are its session"
                    " times; it did not take the time edge offered (a Heartbeat's answer):"
                    " set its clock or NTP server on the charger",
                )
        else:
            tried = refusals_of(st.id, refused)
            why = f"; refused {refusal_text(tried[0])}" if tried else ""
            yield (
                False,
                (
                    f"station {st.id}: not connected; point it at "
                    f"ws://<this controller>:{config.ocpp.port}{config.ocpp.path}/{st.id}{why}"
                ),
            )
    yield from meter_checks(config, functools.partial(_daemon_read, api))
    if config.uplink.mode != "none":
        yield (
            bool(uplink.get("connected")),
            (
                f"uplink {config.uplink.mode}: "
                f"{'connected' if uplink.get('connected') else 'not connected'}"
                f" ({uplink.get('last_error') or 'no error'})"
            ),
        )


def disk_checks(config: Config, store: dict[str, Any] | None) -> Iterator[Check]:
    """Room for the journal (DESIGN.md §2): a full disk costs the oldest meter values,
    and with nothing left to drop, every charger message is refused until there is room.
    `store` is the daemon's view (status JSON); without a daemon the disk is looked at."""
    path = Path(store["path"]) if store and store.get("path") else Path(config.store.path)
    reserve = store["reserve_bytes"] if store else config.store.reserve_mb * 1024 * 1024
    free = store.get("free_bytes") if store else room.free_bytes(path)
    need = max(room.LOW_SPACE_BYTES, 2 * reserve)
    where = f"disk of {path}"
    if store and store.get("disk_full"):
        yield (
            False,
            f"{where}: FULL since {store.get('disk_full_at')}; the oldest meter values are"
            " being dropped to make room: free disk space (e.g. `journalctl --vacuum-size=`)",
        )
    elif free is None:
        yield False, f"{where}: cannot be read (does {path.parent} exist?)"
    elif free < need:
        yield (
            False,
            f"{where}: {free // 2**20} MiB free, less than {need // 2**20} MiB: free disk space"
            " before the journal runs out of room",
        )
    else:
        yield True, f"{where}: {free // 2**20} MiB free"
    failing = store.get("failing") if store else None
    if failing:
        yield (
            False,
            f"{where}: writes failing since {failing['since']}: {failing['error']}; chargers"
            " get InternalError and keep their messages until it works again",
        )
    aside = store.get("set_aside") if store else None
    if aside and aside.get("exists"):
        yield (
            False,
            f"{where}: a damaged database ({aside['error']}) was set aside at {aside['at']}"
            f" as {aside['path']} and a new one started; what it held may be saved with"
            f" `sqlite3 {aside['path']} .recover`; delete it once done",
        )
    if store and reserve and not store.get("reserve_held"):
        yield (
            False,
            f"{where}: the reserve of {reserve // 2**20} MiB is not held (the disk"
            " had less than twice that free); edge takes it once there is room",
        )


MeterRead = Callable[[str], dict[str, Any]]


def meter_checks(config: Config, read: MeterRead) -> Iterator[Check]:
    """Read each meter once and judge the values (DESIGN.md §4.1 `edge doctor`)."""
    for m in config.meters:
        where = f"{m.transport} {m.host or m.device}{f':{m.port}' if m.host else ''} unit {m.unit}"
        head = f"meter {m.id} ({m.role}, {m.profile}, {where})"
        try:
            result = read(m.id)
        except Exception as exc:  # every failure is the check's answer, not a crash
            yield False, f"{head}: no reading: {exc}; check wiring, address, unit id and baud rate"
            continue
        values = result.get("values", {})
        yield True, f"{head}: {describe(values)} ({result.get('read_ms')} ms)"
        for problem in result.get("problems", []):
            yield False, f"meter {m.id}: implausible: {problem}"


def describe(values: dict[str, float]) -> str:
    """A reading in one line: volts, amps, kW, energy, Hz."""
    parts: list[str] = []
    volts = [values.get(f"voltage_l{i}") for i in (1, 2, 3)]
    amps = [values.get(f"current_l{i}") for i in (1, 2, 3)]
    if any(v is not None for v in volts):
        parts.append("/".join(f"{v:.1f}" for v in volts if v is not None) + " V")
    if any(a is not None for a in amps):
        parts.append("/".join(f"{a:.2f}" for a in amps if a is not None) + " A")
    if "power" in values:
        parts.append(f"{values['power'] / 1000:.2f} kW")
    for name in ("import_wh", "export_wh"):
        if name in values:
            parts.append(f"{name.split('_')[0]} {values[name] / 1000:.1f} kWh")
    if "frequency" in values:
        parts.append(f"{values['frequency']:.2f} Hz")
    return ", ".join(parts) or "no values"


def _daemon_read(api: Any, meter_id: str) -> dict[str, Any]:
    result: dict[str, Any] = api.post(f"/api/v1/meters/{quote(meter_id, safe='')}/read")
    return result


def _direct_reads(config: Config) -> MeterRead:
    """Read meters from this process, as the daemon would (it is not running)."""
    from edge.service.meters import MeterService
    from edge.service.site import utc_now

    def read(meter_id: str) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            service = MeterService(config, None, utc_now)
            try:
                return await service.read_now(meter_id)
            finally:
                await service.stop()

        return asyncio.run(once())

    return read


def _clock() -> Iterator[Check]:
    now = datetime.now(UTC)
    yield now.year >= 2024, f"clock: {now.isoformat(timespec='seconds')}"
    synced = hostclock.synchronized()
    if synced is not None:
        yield (
            synced,
            "clock synchronized (NTP)"
            if synced
            else "clock NOT synchronized: session times, and the time chargers are given,"
            " are this controller's; give it an NTP server it can reach (a Raspberry Pi has"
            " no battery-backed clock)",
        )
