"""OCPP 1.6J: the charger's CALLs, translated into domain events (STYLE.md §5).

Each handler maps the payload, hands the event to the site (which commits it before
we answer, DESIGN.md §2) and returns the confirmation payload.
"""

from __future__ import annotations

from typing import Any

from edge.domain.auth import AuthEntry
from edge.domain.events import (
    ConnectorStatusChanged,
    MeterValuesReceived,
    StationBooted,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
)
from edge.domain.station import StationIdentity
from edge.domain.units import iso_utc, parse_time
from edge.ocpp.connection import Handler
from edge.ocpp.readings import readings_v16
from edge.ocpp.site import Site, journal_only

Payload = dict[str, Any]

# Messages journaled as they are, by action, with their event type (DESIGN.md §4.4).
NOTIFICATIONS = {
    "DiagnosticsStatusNotification": "diagnostics.status",
    "FirmwareStatusNotification": "firmware.status",
    "SignedFirmwareStatusNotification": "firmware.status",
    "SecurityEventNotification": "security.event",
    "LogStatusNotification": "log.status",
}


def id_tag_info(entry: AuthEntry) -> Payload:
    """OCPP 1.6 §7.28 IdTagInfo."""
    info: Payload = {"status": entry.status.value}
    if entry.expiry is not None:
        info["expiryDate"] = iso_utc(entry.expiry)
    if entry.parent_id_tag:
        info["parentIdTag"] = entry.parent_id_tag
    return info


class V16Inbound:
    """Handlers of the CALLs a 1.6 charger sends to its central system; one per server,
    each handler takes the station id."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def table(self) -> dict[str, Handler]:
        """Action name to handler."""
        table: dict[str, Handler] = {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "Authorize": self.authorize,
            "StartTransaction": self.start_transaction,
            "StopTransaction": self.stop_transaction,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
        }
        for action in NOTIFICATIONS:
            table[action] = self._notification(action)
        return table

    async def boot_notification(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.2: identity in, registration status and heartbeat interval out."""
        status = self.site.boot_status(station)
        identity = StationIdentity(
            vendor=p["chargePointVendor"],
            model=p["chargePointModel"],
            firmware=p.get("firmwareVersion", ""),
            serial=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber", ""),
        )
        now = self.site.now()
        given = self.site.time_for(station)  # by its clock as last seen, before the boot
        await self.site.record(StationBooted(station, now, identity, status, p))
        return {
            "status": status,
            "currentTime": iso_utc(given),
            "interval": self.site.heartbeat_interval,
        }

    async def heartbeat(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.6."""
        return {"currentTime": iso_utc(self.site.heartbeat(station))}

    async def status_notification(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.9; connectorId 0 is the charge point as a whole."""
        ts = p.get("timestamp")
        await self.site.record(
            ConnectorStatusChanged(
                station,
                self.site.now(),
                connector=p["connectorId"],
                status=p["status"],
                error_code=p["errorCode"],
                timestamp=parse_time(ts) if ts else None,
                raw=p,
            )
        )
        return {}

    async def authorize(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.1."""
        entry = await self.site.authorize(station, p["idTag"])
        return {"idTagInfo": id_tag_info(entry)}

    async def start_transaction(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.8: the session id we allocate is the charger's transactionId."""
        entry = await self.site.authorize(station, p["idTag"])
        rec = await self.site.record(
            TransactionStarted(
                station,
                self.site.now(),
                connector=p["connectorId"],
                id_tag=p["idTag"],
                started_at=parse_time(p["timestamp"]),
                meter_start_wh=float(p["meterStart"]),
                raw=p,
            )
        )
        assert rec.session_id is not None, "the store allocates 1.6 transaction ids"
        return {"transactionId": rec.session_id, "idTagInfo": id_tag_info(entry)}

    async def stop_transaction(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.10; transactionData is kept for billing (§6.49)."""
        readings = readings_v16(p.get("transactionData", ()))
        await self.site.record(
            TransactionEnded(
                station,
                self.site.now(),
                stopped_at=parse_time(p["timestamp"]),
                meter_stop_wh=float(p["meterStop"]),
                # OCPP 1.6 §7.42 Reason: absent means Local.
                stop_reason=p.get("reason", "Local"),
                raw=p,
                session_id=p["transactionId"],
                id_tag=p.get("idTag"),
                readings=readings,
            )
        )
        if "idTag" in p:
            entry = await self.site.authorize(station, p["idTag"])
            return {"idTagInfo": id_tag_info(entry)}
        return {}

    async def meter_values(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.7."""
        readings = readings_v16(p["meterValue"])
        await self.site.record(
            MeterValuesReceived(
                station,
                self.site.now(),
                connector=p["connectorId"],
                readings=readings,
                raw=p,
                session_id=p.get("transactionId"),
            )
        )
        return {}

    async def data_transfer(self, station: str, p: Payload) -> Payload:
        """OCPP 1.6 §4.3: journaled; no vendor extension is known to this central system."""
        await self.site.record(
            StationNotified(station, self.site.now(), "data.transfer", "DataTransfer", p)
        )
        return {"status": "UnknownVendorId"}

    def _notification(self, action: str) -> Handler:
        return journal_only(self.site, NOTIFICATIONS[action], action)
