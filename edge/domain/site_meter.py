"""Site meters: what a poll of a grid, PV, building, battery or EV meter yields.

Units are the project's own (domain/units.py): V, A, W, var, VA, Hz, Wh. Positive active
power is import through the meter, negative is export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# Every quantity a meter profile may map, with the unit its value has after decoding.
QUANTITY_UNITS: Mapping[str, str] = {
    "voltage_l1": "V",
    "voltage_l2": "V",
    "voltage_l3": "V",
    "current_l1": "A",
    "current_l2": "A",
    "current_l3": "A",
    "current_n": "A",
    "power_l1": "W",
    "power_l2": "W",
    "power_l3": "W",
    "power": "W",
    "reactive_power": "var",
    "apparent_power": "VA",
    "power_factor": "1",
    "frequency": "Hz",
    "import_wh": "Wh",
    "export_wh": "Wh",
    "import_l1_wh": "Wh",
    "import_l2_wh": "Wh",
    "import_l3_wh": "Wh",
    "export_l1_wh": "Wh",
    "export_l2_wh": "Wh",
    "export_l3_wh": "Wh",
}

ROLES = ("grid", "pv", "building", "battery", "ev")
PHASES = ("l1", "l2", "l3")


class MeterHealth(StrEnum):
    """How far a meter's latest reading can be trusted."""

    STARTING = "starting"  # no reading yet
    OK = "ok"
    STALE = "stale"  # the last good reading is older than stale_after_s
    FROZEN = "frozen"  # it answers, but the same values over and over
    FAILING = "failing"  # the last poll failed and no fresh reading is left


@dataclass(frozen=True, slots=True)
class SiteMeterSample:
    """One complete poll of one meter; `values` holds the quantities that had a value."""

    meter_id: str
    taken_at: datetime
    values: Mapping[str, float]

    def phase_values(self, prefix: str) -> list[float | None]:
        """e.g. `phase_values("current")` -> [l1, l2, l3] (None where not read)."""
        return [self.values.get(f"{prefix}_{p}") for p in PHASES]


@dataclass(frozen=True, slots=True)
class Plausibility:
    """What a commissioning check compares a reading against."""

    role: str
    phases: int
    max_current_a: float
    nominal_voltage_v: float = 230.0
    previous_import_wh: float | None = None


# DESIGN.md: 180-265 V around a 230 V grid, 45-65 Hz; a few W either way is a meter's own noise.
VOLTAGE_BAND = (180.0 / 230.0, 265.0 / 230.0)
FREQUENCY_BAND = (45.0, 65.0)
SIGN_TOLERANCE_W = 50.0


def implausible(values: Mapping[str, float], check: Plausibility) -> list[str]:
    """Each value that cannot be right on a working site, as a sentence naming it."""
    problems: list[str] = []
    low, high = (check.nominal_voltage_v * f for f in VOLTAGE_BAND)
    for name in ("voltage_l1", "voltage_l2", "voltage_l3")[: check.phases]:
        v = values.get(name)
        if v is not None and not low <= v <= high:
            problems.append(f"{name} {v:.1f} V is outside {low:.0f}-{high:.0f} V")
    hz = values.get("frequency")
    if hz is not None and not FREQUENCY_BAND[0] <= hz <= FREQUENCY_BAND[1]:
        problems.append(f"frequency {hz:.2f} Hz is outside 45-65 Hz")
    for name in ("current_l1", "current_l2", "current_l3"):
        a = values.get(name)
        if a is not None and abs(a) > check.max_current_a:
            problems.append(f"{name} {a:.1f} A is over the meter's {check.max_current_a:g} A")
    imported = values.get("import_wh")
    if (
        imported is not None
        and check.previous_import_wh is not None
        and imported < check.previous_import_wh
    ):
        problems.append(
            f"import_wh went backwards ({check.previous_import_wh:.0f} -> {imported:.0f} Wh)"
        )
    problems.extend(_sign_problems(values.get("power"), check.role))
    return problems


def _sign_problems(power: float | None, role: str) -> list[str]:
    if power is None:
        return []
    if role == "pv" and power > SIGN_TOLERANCE_W:
        return [f"power {power:.0f} W: a PV meter should show export (< 0); check CT direction"]
    if role in ("building", "ev") and power < -SIGN_TOLERANCE_W:
        return [f"power {power:.0f} W: a {role} meter should show import (> 0); check CT direction"]
    return []
