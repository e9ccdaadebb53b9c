"""What edge asks a charger to sample during a session, so that load balancing sees what
each car draws.

Many chargers ship sampling only Energy.Active.Import.Register (OCPP 1.6 §9.1
MeterValuesSampledData), some every few minutes. Without Current.Import in its
MeterValues a car's draw is counted as building load, and behind a grid meter its limit
then chases its own draw. Edge reads the charger's settings when it connects or boots and
adds only what is missing, keeping every measurand the charger already samples:

- OCPP 1.6 §4.7 and §9.1 (Core Profile keys): MeterValuesSampledData (CSL; empty means
  the energy register), MeterValueSampleInterval (s; 0 sends no sampled data), and the
  read-only MeterValuesSampledDataMaxLength (the most measurands the list may hold);
- OCPP 2.0.1 J02, Appendix SampledDataCtrlr: TxUpdatedMeasurands (MemberList),
  TxUpdatedInterval (s).

Plain functions: the calls to send and how to read the answers; the writer sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.domain.station import OcppVersion
from edge.ocpp.commands import Outbound

# What load balancing needs: the car's current, and the register sessions are billed on.
NEEDED = ("Current.Import", "Energy.Active.Import.Register")

MEASURANDS = "measurands"
INTERVAL = "interval"
_V16_KEYS = {MEASURANDS: "MeterValuesSampledData", INTERVAL: "MeterValueSampleInterval"}
_V16_MAX_LENGTH = "MeterValuesSampledDataMaxLength"
_V2_VARIABLES = {MEASURANDS: "TxUpdatedMeasurands", INTERVAL: "TxUpdatedInterval"}
_V2_COMPONENT = "SampledDataCtrlr"


@dataclass(frozen=True, slots=True)
class Sampling:
    """What a charger samples during a session; None where it did not say."""

    measurands: tuple[str, ...] | None
    interval_s: int | None
    max_measurands: int | None = None  # 1.6 MeterValuesSampledDataMaxLength


def setting_name(version: OcppVersion, which: str) -> str:
    """The key (1.6) or Component.Variable (2.x) of a setting, for logs."""
    if version.is_v2:
        return f"{_V2_COMPONENT}.{_V2_VARIABLES[which]}"
    return _V16_KEYS[which]


def read_call(version: OcppVersion) -> Outbound:
    """GetConfiguration (1.6 §5.8) / GetVariables (2.0.1 B06) of both settings."""
    if version.is_v2:
        data = [
            {"component": {"name": _V2_COMPONENT}, "variable": {"name": name}}
            for name in _V2_VARIABLES.values()
        ]
        return Outbound("GetVariables", {"getVariableData": data})
    return Outbound("GetConfiguration", {"key": [*_V16_KEYS.values(), _V16_MAX_LENGTH]})


def parse_read(version: OcppVersion, response: dict[str, Any]) -> Sampling:
    """The charger's answer to `read_call` as a Sampling."""
    values: dict[str, str] = {}
    max_length = ""
    if version.is_v2:
        names = {v: k for k, v in _V2_VARIABLES.items()}
        for result in response.get("getVariableResult") or []:
            which = names.get(result.get("variable", {}).get("name"))
            value = result.get("attributeValue")
            if which and result.get("attributeStatus") == "Accepted" and value is not None:
                values[which] = value
    else:
        keys = {v: k for k, v in _V16_KEYS.items()}
        for entry in response.get("configurationKey") or []:
            which = keys.get(entry.get("key"))
            if which and entry.get("value") is not None:
                values[which] = entry["value"]
            elif entry.get("key") == _V16_MAX_LENGTH:
                max_length = (entry.get("value") or "").strip()
    measurands = values.get(MEASURANDS)
    interval = values.get(INTERVAL, "").strip()
    return Sampling(
        tuple(m.strip() for m in measurands.split(",") if m.strip())
        if measurands is not None
        else None,
        int(interval) if interval.isdigit() else None,
        int(max_length) if max_length.isdigit() else None,
    )


def wanted_measurands(current: Sampling) -> tuple[str, ...]:
    """What the charger samples, with what load balancing needs added at the end."""
    have = current.measurands or ()
    return (*have, *(m for m in NEEDED if m not in have))


def too_many(current: Sampling) -> int | None:
    """How many measurands the addition would make, where that is more than the charger
    takes: then edge does not ask, rather than drop one the operator chose."""
    wanted = len(wanted_measurands(current))
    limit = current.max_measurands
    return wanted if limit is not None and wanted > limit else None


def changes(current: Sampling, interval_s: int) -> list[tuple[str, str]]:
    """(setting, new value) for what is missing: the needed measurands added to those the
    charger samples, and the interval where it is off (0), unknown or longer than asked.
    A charger that samples more often is left so."""
    out: list[tuple[str, str]] = []
    wanted = wanted_measurands(current)
    if wanted != (current.measurands or ()) and too_many(current) is None:
        out.append((MEASURANDS, ",".join(wanted)))
    if current.interval_s is None or current.interval_s == 0 or current.interval_s > interval_s:
        out.append((INTERVAL, str(interval_s)))
    return out


def write_call(version: OcppVersion, which: str, value: str) -> Outbound:
    """ChangeConfiguration (1.6 §5.3) / SetVariables (2.0.1 B05) of one setting."""
    if version.is_v2:
        data = {
            "attributeValue": value,
            "component": {"name": _V2_COMPONENT},
            "variable": {"name": _V2_VARIABLES[which]},
        }
        return Outbound("SetVariables", {"setVariableData": [data]})
    return Outbound("ChangeConfiguration", {"key": _V16_KEYS[which], "value": value})


def write_status(version: OcppVersion, response: dict[str, Any]) -> str:
    """Accepted, RebootRequired, Rejected, NotSupported (1.6), UnknownVariable (2.x), ..."""
    if version.is_v2:
        results = response.get("setVariableResult") or [{}]
        return str(results[0].get("attributeStatus", "Rejected"))
    return str(response.get("status", "Rejected"))
