"""MeterValue payloads (1.6 and 2.x) to domain readings; pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from edge.domain.events import ENERGY_IMPORT, MeterReading, MeterSample
from edge.domain.units import parse_time

log = structlog.get_logger("edge.ocpp")


def readings_v16(meter_values: Iterable[dict[str, Any]]) -> tuple[MeterReading, ...]:
    """OCPP 1.6 §7.31 MeterValue: sampledValue.value is a string; defaults per §7.45."""
    out = []
    for mv in meter_values:
        samples = []
        for sv in mv.get("sampledValue", ()):
            if sv.get("format") == "SignedData":
                continue  # signed blobs are kept in `raw`, not a number
            try:
                value = float(sv["value"])
            except ValueError:
                log.info("ocpp.meter.unparsable", value=sv["value"][:40])
                continue
            samples.append(
                MeterSample(
                    measurand=sv.get("measurand", ENERGY_IMPORT),
                    value=value,
                    unit=sv.get("unit", "Wh"),
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                )
            )
        out.append(MeterReading(parse_time(mv["timestamp"]), tuple(samples)))
    return tuple(out)


def readings_v2(meter_values: Iterable[dict[str, Any]]) -> tuple[MeterReading, ...]:
    """OCPP 2.0.1 MeterValueType: numeric value, unitOfMeasure {unit, multiplier}."""
    out = []
    for mv in meter_values:
        samples = []
        for sv in mv.get("sampledValue", ()):
            uom = sv.get("unitOfMeasure") or {}
            multiplier = uom.get("multiplier", 0)
            samples.append(
                MeterSample(
                    measurand=sv.get("measurand", ENERGY_IMPORT),
                    value=float(sv["value"]) * (10**multiplier),
                    unit=uom.get("unit", "Wh"),
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                )
            )
        out.append(MeterReading(parse_time(mv["timestamp"]), tuple(samples)))
    return tuple(out)
