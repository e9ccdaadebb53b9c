"""Units and the one sign convention used everywhere in edge.

Positive = import from the grid / charging the EV; negative = export / discharging.
Current is in A per phase, power in W, energy in Wh. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Amps = float
Watts = float
WattHours = float


# How far a reading may seem to come from the future before it counts as stale: this
# controller's clock went back (NTP stepping a clock that ran ahead), and its age says
# nothing any more.
CLOCK_STEP_BACK_S = 1.0


def fresh(age_s: float, max_age_s: float) -> bool:
    """Whether something `age_s` old (by the wall clock) is young enough to rely on. One
    from the future is not: after the clock went back by an hour, a dead meter's last
    reading would otherwise pass for fresh for that hour."""
    return -CLOCK_STEP_BACK_S <= age_s <= max_age_s


def iso_utc(t: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with a `Z` suffix, millisecond precision."""
    if t.utcoffset():
        t = t.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """Parse an OCPP dateTime (RFC 3339); a value without offset is taken as UTC."""
    t = datetime.fromisoformat(text.replace("z", "Z"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def parse_local(text: str, timezone: str) -> datetime:
    """A time a person typed: a date (its midnight) or a date and time, in `timezone`
    unless it names its own offset (Z, +01:00). ValueError says what is accepted."""
    try:
        t = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"not a date or time: {text!r}; give 2026-11-01 or 2026-11-01T08:00"
            " (in the site's time zone) or with an offset, 2026-11-01T08:00Z"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=ZoneInfo(timezone))


def table_time(iso: str | None, zone: str = "UTC") -> str | None:
    """A time as the API gives it (ISO 8601 UTC) for a table or a line, in `zone`:
    2026-11-22 11:00:05. One that does not parse, or an unknown zone, is shown as sent."""
    if not iso:
        return None
    if zone != "UTC":
        try:
            t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
            return t.strftime("%Y-%m-%d %H:%M:%S")
        except (ValueError, ZoneInfoNotFoundError):
            pass
    return iso[:19].replace("T", " ")


def to_wh(value: float, unit: str | None) -> WattHours:
    """Convert an energy reading in Wh or kWh (OCPP UnitOfMeasure) to Wh."""
    return value * 1000.0 if unit == "kWh" else value
