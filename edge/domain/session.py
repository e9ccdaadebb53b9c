"""Charging sessions as the gateway keeps them, whatever OCPP version carried them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.domain.units import iso_utc


@dataclass(frozen=True, slots=True)
class Session:
    """One charging session. `id` is the gateway's; for 1.6 it is also the local
    transactionId the charger got; `transaction_id` is the 2.x charger's own id."""

    id: int
    station: str
    connector: int
    id_tag: str | None
    started_at: datetime
    stopped_at: datetime | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    status: str  # "active" | "completed"
    stop_reason: str | None
    offline: bool
    synced: bool
    transaction_id: str | None = None
    seq_last: int | None = None
    seq_gaps: tuple[int, ...] = ()
    last_meter_wh: float | None = None

    @property
    def energy_wh(self) -> float | None:
        """Energy so far (active) or in total (completed), from the meter registers."""
        end = self.meter_stop_wh if self.meter_stop_wh is not None else self.last_meter_wh
        if self.meter_start_wh is None or end is None:
            return None
        # Registers are floats: drop the binary noise of the subtraction (mWh precision).
        return round(max(0.0, end - self.meter_start_wh), 3)

    def to_json(self) -> dict[str, Any]:
        """The DESIGN.md §4.6 session shape (fields may be added, never renamed)."""
        return {
            "id": self.id,
            "station": self.station,
            "connector": self.connector,
            "id_tag": self.id_tag,
            "started_at": iso_utc(self.started_at),
            "stopped_at": iso_utc(self.stopped_at) if self.stopped_at else None,
            "meter_start_wh": self.meter_start_wh,
            "meter_stop_wh": self.meter_stop_wh,
            "energy_wh": self.energy_wh,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "offline": self.offline,
            "synced": self.synced,
            "transaction_id": self.transaction_id,
            "seq_gaps": list(self.seq_gaps),
        }


def track_seq(
    last: int | None, gaps: tuple[int, ...], seq: int
) -> tuple[int | None, tuple[int, ...]]:
    """Fold one 2.x TransactionEvent seqNo into (highest seen, missing numbers).

    seqNo counts up per transaction (OCPP 2.0.1 E01/E02 TransactionEventRequest.seqNo);
    events may arrive out of order after an outage, so a late number closes its gap.
    """
    if last is None:
        return seq, tuple(range(0, seq)) if seq > 0 else ()
    if seq > last:
        return seq, (*gaps, *range(last + 1, seq))
    return last, tuple(g for g in gaps if g != seq)
