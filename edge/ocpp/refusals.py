"""Refused charger handshakes in words, for `edge status` and `edge doctor`.

The endpoint keeps the latest few (edge/ocpp/server.py `refusals`); the API shows them
under `stations.refused` in the status JSON.
"""

from __future__ import annotations

from typing import Any

from edge.domain.units import table_time


def refusal_text(r: dict[str, Any]) -> str:
    """One refused handshake: "'cp16' from 10.0.0.5 at 2026-12-04 10:00:05 UTC (3 times
    since 09:58:05): unknown station (did you mean 'CP16'?)"."""
    at = table_time(r.get("at")) or ""
    hint = f" (did you mean {r['meant']!r}?)" if r.get("meant") else ""
    where = f" from {r['remote']}" if r.get("remote") else ""
    count = r.get("count") or 1
    since = (table_time(r.get("first_at")) or "")[11:]
    times = f" ({count} times since {since})" if count > 1 else ""
    return f"{r.get('station')!r}{where} at {at} UTC{times}: {r.get('reason')}{hint}"


def refusals_of(station: str, refused: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The refusals that concern a configured station: its own id (a wrong password or
    certificate) or an id that was probably meant to be it."""
    return [r for r in refused if station in (r.get("station"), r.get("meant"))]
