"""Every notification a charger may send is answered and lands in the journal and outbox."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.conftest import RunningSite
from tests.peer import BOOT_2, BOOT_16, RawCharger

TS = "2026-11-22T10:00:00Z"

V16: list[tuple[str, dict[str, Any], str]] = [
    ("DiagnosticsStatusNotification", {"status": "Uploaded"}, "diagnostics.status"),
    ("FirmwareStatusNotification", {"status": "Installed"}, "firmware.status"),
    (
        "SignedFirmwareStatusNotification",
        {"status": "Installed", "requestId": 1},
        "firmware.status",
    ),
    ("SecurityEventNotification", {"type": "ResetOrReboot", "timestamp": TS}, "security.event"),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 2}, "log.status"),
    ("DataTransfer", {"vendorId": "acme", "messageId": "x", "data": "y"}, "data.transfer"),
]
V201: list[tuple[str, dict[str, Any], str]] = [
    (
        "NotifyEvent",
        {
            "generatedAt": TS,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": TS,
                    "trigger": "Alerting",
                    "actualValue": "1",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Door"},
                    "variable": {"name": "Open"},
                }
            ],
        },
        "notify.event",
    ),
    ("NotifyReport", {"requestId": 1, "generatedAt": TS, "seqNo": 0}, "notify.report"),
    (
        "ReportChargingProfiles",
        {
            "requestId": 1,
            "chargingLimitSource": "CSO",
            "evseId": 1,
            "chargingProfile": [
                {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Relative",
                    "chargingSchedule": [
                        {
                            "id": 1,
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
                        }
                    ],
                }
            ],
        },
        "charging_profiles.report",
    ),
    ("FirmwareStatusNotification", {"status": "Installed", "requestId": 3}, "firmware.status"),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 4}, "log.status"),
    (
        "SecurityEventNotification",
        {"type": "StartupOfTheDevice", "timestamp": TS},
        "security.event",
    ),
    (
        "NotifyEVChargingSchedule",
        {
            "timeBase": TS,
            "evseId": 1,
            "chargingSchedule": {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
            },
        },
        "ev.charging_schedule",
    ),
    ("DataTransfer", {"vendorId": "acme"}, "data.transfer"),
    (
        "NotifyChargingLimit",
        {
            "evseId": 1,
            "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
            "chargingSchedule": [
                {
                    "id": 7,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
                }
            ],
        },
        "charging_limit.set",
    ),
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1}, "charging_limit.cleared"),
]


def journaled(site: RunningSite, station: str) -> list[str]:
    with sqlite3.connect(site.db) as db:
        return [
            t
            for (t,) in db.execute(
                "SELECT type FROM outbox WHERE station = ? ORDER BY id", (station,)
            )
        ]


@pytest.mark.parametrize(
    ("station", "version", "cases"),
    [("CP16", "1.6", V16), ("CP201", "2.0.1", V201), ("CP21", "2.1", V201)],
)
async def test_notifications_are_answered_and_kept(
    site: RunningSite, station: str, version: str, cases: list[tuple[str, dict[str, Any], str]]
) -> None:
    charger = await RawCharger.connect(site.url, station, version)
    boot = BOOT_16 if version == "1.6" else BOOT_2
    assert (await charger.call("BootNotification", boot))[0] == 3
    for action, payload, _ in cases:
        reply = await charger.call(action, payload)
        assert reply[0] == 3, f"{action}: {reply}"
    kinds = journaled(site, station)
    for action, _, kind in cases:
        assert kind in kinds, f"{action} not journaled as {kind}"
    await charger.close()
