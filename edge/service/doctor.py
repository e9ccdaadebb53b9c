"""`edge doctor`: commissioning checks an installer runs before leaving the site."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from edge.config import Config

Check = tuple[bool, str]


def run_checks(config: Config, api: Any) -> Iterator[Check]:
    """Each check as (ok, one line saying what was found and what to do)."""
    from edge.api.client import ApiError, DaemonUnreachable

    yield True, f"config valid ({len(config.stations)} stations, {len(config.meters)} meters)"
    yield from _clock()
    try:
        ready = api.get("/health/ready")
        stations = {s["id"]: s for s in api.get("/api/v1/stations")}
        uplink = api.get("/api/v1/uplink")
        meters = api.get("/api/v1/meters")
    except DaemonUnreachable as exc:
        yield False, f"daemon: {exc}; start it with `systemctl start edge` or `edge run`"
        return
    except ApiError as exc:
        yield False, f"daemon answered {exc.status}: {exc.message}"
        return
    yield bool(ready.get("ready")), f"daemon ready: {ready}"
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
        else:
            yield (
                False,
                (
                    f"station {st.id}: not connected; point it at "
                    f"ws://<this controller>:{config.ocpp.port}{config.ocpp.path}/{st.id}"
                ),
            )
    for m in meters:
        yield bool(m.get("ok")), f"meter {m.get('id')}: {'ok' if m.get('ok') else 'failing'}"
    if config.uplink.mode != "none":
        yield (
            bool(uplink.get("connected")),
            (
                f"uplink {config.uplink.mode}: "
                f"{'connected' if uplink.get('connected') else 'not connected'}"
                f" ({uplink.get('last_error') or 'no error'})"
            ),
        )


def _clock() -> Iterator[Check]:
    now = datetime.now(UTC)
    yield now.year >= 2024, f"clock: {now.isoformat(timespec='seconds')}"
    if shutil.which("timedatectl"):
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out:
            yield out == "yes", f"clock NTP-synchronised: {out}"
