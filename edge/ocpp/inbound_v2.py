"""OCPP 2.0.1 and 2.1: the charging station's CALLs, translated into domain events.

One translation for both versions: the messages handled here have the same shape in
2.0.1 and 2.1 (2.1 only adds optional fields, which stay in `raw`).
"""

from __future__ import annotations

from typing import Any

from edge.domain.auth import AuthEntry, AuthStatus
from edge.domain.events import (
    ConnectorStatusChanged,
    MeterValuesReceived,
    StationBooted,
    StationNotified,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
    energy_import_wh,
)
from edge.domain.station import OcppVersion, StationIdentity
from edge.domain.units import iso_utc, parse_time
from edge.ocpp.connection import Handler
from edge.ocpp.readings import readings_v2
from edge.ocpp.site import Site, journal_only

Payload = dict[str, Any]

NOTIFICATIONS = {
    "NotifyEvent": "notify.event",
    "NotifyReport": "notify.report",
    "ReportChargingProfiles": "charging_profiles.report",
    "FirmwareStatusNotification": "firmware.status",
    "LogStatusNotification": "log.status",
    "SecurityEventNotification": "security.event",
    # OCPP 2.0.1 K12 / K13: a limit from a source other than this CSMS (an EMS, the grid
    # operator) was set on or cleared from the charger. Kept and forwarded; the balancer
    # sees its effect in the charger's own meter values.
    "NotifyChargingLimit": "charging_limit.set",
    "ClearedChargingLimit": "charging_limit.cleared",
}


def id_token_info(entry: AuthEntry) -> Payload:
    """OCPP 2.0.1 IdTokenInfoType."""
    info: Payload = {"status": entry.status.value}
    if entry.expiry is not None:
        info["cacheExpiryDateTime"] = iso_utc(entry.expiry)
    if entry.parent_id_tag:
        info["groupIdToken"] = {"idToken": entry.parent_id_tag, "type": "Central"}
    return info


class V2Inbound:
    """Handlers of the CALLs a 2.0.1 / 2.1 charging station sends to its CSMS; one per
    server and version, each handler takes the station id."""

    def __init__(self, site: Site, version: OcppVersion) -> None:
        self.site = site
        self.version = version

    def table(self) -> dict[str, Handler]:
        """Action name to handler."""
        table: dict[str, Handler] = {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "Authorize": self.authorize,
            "TransactionEvent": self.transaction_event,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
            "NotifyEVChargingNeeds": self.notify_ev_charging_needs,
            "NotifyEVChargingSchedule": self.notify_ev_charging_schedule,
            "Get15118EVCertificate": self.get_15118_ev_certificate,
            "GetCertificateStatus": self.get_certificate_status,
        }
        for action in NOTIFICATIONS:
            table[action] = self._notification(action)
        return table

    async def boot_notification(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 B01-B03."""
        cs = p["chargingStation"]
        identity = StationIdentity(
            vendor=cs["vendorName"],
            model=cs["model"],
            firmware=cs.get("firmwareVersion", ""),
            serial=cs.get("serialNumber", ""),
        )
        status = self.site.boot_status(station)
        now = self.site.now()
        given = self.site.time_for(station)  # by its clock as last seen, before the boot
        await self.site.record(StationBooted(station, now, identity, status, p))
        return {
            "currentTime": iso_utc(given),
            "interval": self.site.heartbeat_interval,
            "status": status,
        }

    async def heartbeat(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 G02."""
        return {"currentTime": iso_utc(self.site.heartbeat(station))}

    async def status_notification(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 G01: status per EVSE connector."""
        await self.site.record(
            ConnectorStatusChanged(
                station,
                self.site.now(),
                connector=p["evseId"],
                status=p["connectorStatus"],
                error_code=None,
                timestamp=parse_time(p["timestamp"]),
                raw=p,
                connector_id=p["connectorId"],
            )
        )
        return {}

    async def authorize(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 C01."""
        return {"idTokenInfo": id_token_info(await self._authorize(station, p["idToken"]))}

    async def _authorize(self, station: str, token: Payload) -> AuthEntry:
        if token["type"] == "NoAuthorization":
            # C01: a token of type NoAuthorization carries no identifier to check.
            return AuthEntry(token["idToken"], AuthStatus.ACCEPTED)
        return await self.site.authorize(station, token["idToken"])

    async def transaction_event(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 E01-E15: Started / Updated / Ended with seqNo and the offline flag."""
        now = self.site.now()
        info = p["transactionInfo"]
        tx_id = info["transactionId"]
        evse = p.get("evse") or {}
        token = p.get("idToken")
        id_tag = token["idToken"] if token else None
        readings = readings_v2(p.get("meterValue", ()))
        offline = bool(p.get("offline", False))
        event_type = p["eventType"]
        if event_type == "Started":
            await self.site.record(
                TransactionStarted(
                    station,
                    now,
                    connector=evse.get("id", 0),
                    id_tag=id_tag,
                    started_at=parse_time(p["timestamp"]),
                    meter_start_wh=energy_import_wh(readings),
                    raw=p,
                    transaction_id=tx_id,
                    seq_no=p["seqNo"],
                    offline=offline,
                    trigger=p["triggerReason"],
                    readings=readings,
                )
            )
        elif event_type == "Updated":
            await self.site.record(
                TransactionUpdated(
                    station,
                    now,
                    transaction_id=tx_id,
                    seq_no=p["seqNo"],
                    offline=offline,
                    trigger=p["triggerReason"],
                    raw=p,
                    connector=evse.get("id"),
                    id_tag=id_tag,
                    charging_state=info.get("chargingState"),
                    readings=readings,
                )
            )
        else:
            await self.site.record(
                TransactionEnded(
                    station,
                    now,
                    stopped_at=parse_time(p["timestamp"]),
                    meter_stop_wh=energy_import_wh(readings),
                    # 2.0.1 E06: stoppedReason absent means Local.
                    stop_reason=info.get("stoppedReason", "Local"),
                    raw=p,
                    transaction_id=tx_id,
                    id_tag=id_tag,
                    seq_no=p["seqNo"],
                    offline=offline,
                    connector=evse.get("id"),
                    readings=readings,
                )
            )
        if token is None:
            return {}
        return {"idTokenInfo": id_token_info(await self._authorize(station, token))}

    async def meter_values(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 J01: evseId 0 is the main meter."""
        await self.site.record(
            MeterValuesReceived(
                station,
                self.site.now(),
                connector=p["evseId"],
                readings=readings_v2(p["meterValue"]),
                raw=p,
            )
        )
        return {}

    async def data_transfer(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 P01/P02: journaled; no vendor extension is known here."""
        await self.site.record(
            StationNotified(station, self.site.now(), "data.transfer", "DataTransfer", p)
        )
        return {"status": "UnknownVendorId"}

    async def notify_ev_charging_needs(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 K15: journaled; this CSMS does not yet compute ISO 15118 schedules."""
        await self.site.record(
            StationNotified(
                station, self.site.now(), "ev.charging_needs", "NotifyEVChargingNeeds", p
            )
        )
        # 2.1 has NoChargingProfile for "no profile will follow"; 2.0.1 only Rejected.
        status = "NoChargingProfile" if self.version is OcppVersion.V21 else "Rejected"
        return {"status": status}

    async def notify_ev_charging_schedule(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 K17: the EV's schedule is kept."""
        await self.site.record(
            StationNotified(
                station,
                self.site.now(),
                "ev.charging_schedule",
                "NotifyEVChargingSchedule",
                p,
            )
        )
        return {"status": "Accepted"}

    async def get_15118_ev_certificate(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 M02: no contract-certificate pool is configured, so Failed."""
        return {"status": "Failed", "exiResponse": ""}

    async def get_certificate_status(self, station: str, p: Payload) -> Payload:
        """OCPP 2.0.1 M06: no OCSP responder is configured, so Failed."""
        return {"status": "Failed"}

    def _notification(self, action: str) -> Handler:
        return journal_only(self.site, NOTIFICATIONS[action], action)
