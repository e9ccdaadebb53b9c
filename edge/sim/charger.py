"""One simulated charging station speaking OCPP-J 1.6, 2.0.1 or 2.1 over raw websockets.

A good citizen: one outstanding CALL at a time (OCPP-J 1.6 §4.1.1), a schema-valid answer
to every command it knows and CALLERROR NotImplemented for the rest, charging limits
followed, an energy register integrated from what it draws, reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from edge.domain.units import iso_utc
from edge.sim.profiles import VOLTS, Period, Profile, parse_profile, prevailing
from edge.sim.settings import MAX_STACK_LEVEL, Setting, v2_settings, v16_settings
from edge.sim.wire import Answer, CallFailed, Link, Payload

__all__ = ["CallFailed", "Connector", "Profile", "SimCharger", "SimStation"]

BATTERY_WH = 60_000.0
MIN_V2G_SOC = 20.0  # the car keeps this much for driving
STEP_S = 0.05  # pause between the steps of a simulated firmware update or upload

# Commands of one version only; every `_on_<Action>` handler serves the others for both.
V16_ONLY = frozenset(
    {
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "GetConfiguration",
        "ChangeConfiguration",
        "GetDiagnostics",
    }
)
V2_ONLY = frozenset(
    {"RequestStartTransaction", "RequestStopTransaction", "GetVariables", "SetVariables", "GetLog"}
)
# 1.6 connector states that 2.x folds into Occupied (OCPP 2.0.1 ConnectorStatusEnumType).
OCCUPIED = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})
# 1.6 stop reasons to 2.x (triggerReason, stoppedReason).
V2_STOP = {
    "Local": ("StopAuthorized", "Local"),
    "Remote": ("RemoteStop", "Remote"),
    "EVDisconnected": ("EVCommunicationLost", "EVDisconnected"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "HardReset": ("ResetCommand", "ImmediateReset"),
    "SoftReset": ("ResetCommand", "ImmediateReset"),
    "ImmediateReset": ("ResetCommand", "ImmediateReset"),
    "UnlockCommand": ("UnlockCommand", "Other"),
}
MAX_PURPOSES = frozenset(
    {"ChargePointMaxProfile", "ChargingStationMaxProfile", "ChargingStationExternalConstraints"}
)


def now_iso() -> str:
    """The current time as an OCPP dateTime."""
    return iso_utc(datetime.now(UTC))


@dataclass
class SimStation:
    """Configuration of one simulated station."""

    id: str
    version: str = "1.6"
    connectors: int = 1
    v2g: bool = False
    password: str | None = None
    max_current_a: float = 32.0
    phases: int = 3
    vendor: str = "edge-sim"
    model: str = "SimCharger"
    car_max_current_a: float = 32.0
    meter_interval_s: float = 10.0
    # seconds a car takes to follow a new limit (IEC 61851-1 gives it up to 5 s to reduce)
    ramp_s: float = 0.0
    # charging rate units it takes in SetChargingProfile, and periods per schedule (a
    # real charger's ChargingScheduleAllowedChargingRateUnit / ChargingScheduleMaxPeriods)
    profile_units: tuple[str, ...] = ("A", "W")
    max_periods: int = 24


@dataclass
class Connector:
    """What one connector (2.x: one EVSE with connector 1) is doing."""

    id: int
    energy_wh: float
    updated: float
    export_wh: float = 0.0
    # the car follows a changed target only after SimStation.ramp_s
    ramp_from: float = 0.0
    ramp_target: float = 0.0
    ramp_at: float = 0.0
    soc: float = 50.0
    plugged: bool = False
    operative: bool = True
    inoperative_later: bool = False  # ChangeAvailability Scheduled until the session ends
    transaction: str | None = None  # 1.6: the CSMS's id as text; 2.x: ours
    id_tag: str | None = None
    seq_no: int = 0
    started: datetime | None = None
    remote_start_id: int | None = None
    discharge_a: float = 0.0  # a discharge the car asks for itself (A per phase)
    status: str = "Available"  # last status reported


# Settings whose value the simulator acts on: (1.6 key, 2.x Component.Variable).
HEARTBEAT = ("HeartbeatInterval", "OCPPCommCtrlr.HeartbeatInterval")
METER = ("MeterValueSampleInterval", "SampledDataCtrlr.TxUpdatedInterval")
AUTH_REMOTE = ("AuthorizeRemoteTxRequests", "AuthCtrlr.AuthorizeRemoteStart")


class SimCharger:
    """A simulated station; `run()` keeps it connected until `close()`."""

    def __init__(
        self,
        cfg: SimStation,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        ssl: Any = None,
        say: Callable[[str], None] | None = None,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.url = url.rstrip("/")
        self.clock = clock
        self.ssl = ssl
        self.say = say or (lambda line: None)
        self.v2 = cfg.version != "1.6"
        self.rnd = random.Random(f"{seed}-{cfg.id}")
        self.connectors = {
            i: Connector(i, energy_wh=round(self.rnd.uniform(1e5, 5e6)), updated=clock())
            for i in range(1, cfg.connectors + 1)
        }
        self.settings = v2_settings(cfg) if self.v2 else v16_settings(cfg)
        self.profiles: list[Profile] = []
        self.local_list: dict[str, str] = {}
        self.local_list_version = 0
        self.received: list[tuple[str, Payload]] = []
        self.connected = False
        self.boot_status: str | None = None
        self._link: Link | None = None
        self._closing = False
        self._up = asyncio.Event()
        self._accepted = asyncio.Event()
        self._reboot = asyncio.Event()
        self._reset_when_idle = False
        self._boot_reason = "PowerUp"
        self._boot_interval = 0

    # -- state the CSMS and the tests look at ------------------------------------------

    def _setting(self, keys: tuple[str, str]) -> str:
        return self.settings[keys[1] if self.v2 else keys[0]].value

    def _period(self, c: Connector) -> tuple[float, Period | None]:
        """Limit in force (A) and the Tx/TxDefault period that sets it (OCPP 1.6 §3.13.2)."""
        now = datetime.now(UTC)
        mine = [p for p in self.profiles if p.connector in (0, c.id)]
        station_max = prevailing((p for p in mine if p.purpose in MAX_PURPOSES), now, None)
        tx = None
        if c.transaction is not None:
            tx_profiles = (
                p
                for p in mine
                if p.purpose == "TxProfile" and p.transaction in (None, c.transaction)
            )
            tx = prevailing(tx_profiles, now, c.started)
        defaults = [p for p in mine if p.purpose not in MAX_PURPOSES and p.purpose != "TxProfile"]
        # A TxDefaultProfile on the connector replaces the one on connector 0.
        own = [p for p in defaults if p.connector == c.id]
        default = prevailing(own or defaults, now, c.started)
        chosen = tx or default
        limit = self.cfg.max_current_a
        for period in (station_max, chosen):
            if period is not None and period.limit_a is not None:
                limit = min(limit, period.limit_a)
        return max(limit, 0.0), chosen

    @property
    def limit_a(self) -> dict[int, float]:
        """Current limit per connector from the CSMS's charging profiles (A per phase)."""
        return {i: self._period(c)[0] for i, c in self.connectors.items()}

    def draw_a(self, connector: int = 1) -> float:
        """What the car draws now (A per phase), `ramp_s` behind its target."""
        c = self.connectors[connector]
        target = self._target_a(c)
        if not self.cfg.ramp_s:
            return target
        now = self.clock()
        actual = c.ramp_target if now - c.ramp_at >= self.cfg.ramp_s else c.ramp_from
        if target != c.ramp_target:
            c.ramp_from, c.ramp_target, c.ramp_at = actual, target, now
        return actual

    def _target_a(self, c: Connector) -> float:
        """What the car would draw under the limits in force; negative while discharging."""
        if c.transaction is None or not c.plugged or not c.operative:
            return 0.0
        limit, period = self._period(c)
        setpoint = -c.discharge_a if c.discharge_a else (period.setpoint_a if period else None)
        if self.cfg.v2g and setpoint is not None and setpoint < 0:
            if c.soc <= MIN_V2G_SOC:
                return 0.0
            cap = min(self.cfg.car_max_current_a, self.cfg.max_current_a)
            if period is not None and period.discharge_limit_a is not None:
                cap = min(cap, period.discharge_limit_a)
            return -min(-setpoint, cap)
        if c.soc >= 100.0:
            return 0.0
        draw = min(limit, self.cfg.car_max_current_a)
        if setpoint is not None and setpoint >= 0:
            draw = min(draw, setpoint)
        return draw

    def _settle(self, c: Connector) -> None:
        """Integrate energy and SoC up to now; call before anything that changes the draw."""
        now = self.clock()
        hours, c.updated = max(now - c.updated, 0.0) / 3600, now
        wh = self.draw_a(c.id) * VOLTS * self.cfg.phases * hours
        if wh >= 0:
            c.energy_wh += wh
        else:
            c.export_wh -= wh
        c.soc = min(max(c.soc + wh / BATTERY_WH * 100, 0.0), 100.0)

    def _settle_all(self) -> dict[int, float]:
        for c in self.connectors.values():
            self._settle(c)
        return {i: self.draw_a(i) for i in self.connectors}

    def _derived_status(self, c: Connector) -> str:
        """The OCPP 1.6 ChargePointStatus that follows from the connector's state."""
        if not c.operative:
            return "Unavailable"
        if c.transaction is not None:
            if self.draw_a(c.id):
                return "Charging"
            return "SuspendedEV" if c.soc >= 100.0 else "SuspendedEVSE"
        return "Preparing" if c.plugged else "Available"

    # -- connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, boot, keep alive; reconnect with capped, jittered backoff until closed."""
        failures = 0
        while not self._closing:
            try:
                async with connect(
                    f"{self.url}/{self.cfg.id}",
                    ssl=self.ssl,
                    subprotocols=[Subprotocol(f"ocpp{self.cfg.version}")],
                    additional_headers=self._auth_header(),
                    open_timeout=10,
                    compression=None,  # keeps a thousand stations small; chargers rarely deflate
                ) as ws:
                    await self._online(ws)
            except InvalidStatus as exc:
                self.say(f"{self.cfg.id}: refused (HTTP {exc.response.status_code})")
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, CallFailed):
                pass
            finally:
                if self.connected:  # back off again only after a connection that worked
                    failures = 0
                self._offline()
            if self._closing:
                return
            if self._reboot.is_set():
                self._reboot.clear()
                await asyncio.sleep(0.1)
                continue
            failures += 1
            backoff = min(2.0 ** (failures - 1), 30.0)
            await asyncio.sleep(backoff * self.rnd.uniform(0.5, 1.0))

    def _auth_header(self) -> dict[str, str] | None:
        # OCPP 1.6 security whitepaper §2.1 / 2.0.1 Part 2 A00.FR.2xx: Basic id:password.
        if not self.cfg.password:
            return None
        token = base64.b64encode(f"{self.cfg.id}:{self.cfg.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _online(self, ws: ClientConnection) -> None:
        if ws.subprotocol != f"ocpp{self.cfg.version}":
            # OCPP-J 1.6 §3.1.2: no agreed subprotocol means no OCPP on this connection.
            self.say(f"{self.cfg.id}: server did not accept ocpp{self.cfg.version}")
            raise CallFailed("subprotocol not accepted")
        self._link = Link(ws, self.cfg.id, self._respond, v2=self.v2)
        tasks = [
            asyncio.create_task(self._link.serve()),
            asyncio.create_task(self._lifecycle()),
            asyncio.create_task(self._reboot.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[1] in done:
                tasks[1].result()  # a failed boot drops the connection; a bug surfaces
        finally:
            for task in tasks[1:]:
                task.cancel()
            await ws.close()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _offline(self) -> None:
        if self.connected:
            self.say(f"{self.cfg.id}: disconnected")
        self.connected = False
        self._up.clear()
        self._accepted.clear()
        self._link = None

    async def _lifecycle(self) -> None:
        await self._boot()
        for c in self.connectors.values():
            await self._report(c, force=True)
        self.connected = True
        self._up.set()
        self.say(f"{self.cfg.id}: connected (OCPP {self.cfg.version})")
        await self._tick()

    async def _boot(self) -> None:
        """BootNotification until Accepted, waiting the interval the CSMS gives (OCPP 1.6 §4.2)."""
        while True:
            if await self._send_boot(self._boot_reason):
                self._boot_reason = "PowerUp"
                return
            # OCPP 1.6 §4.2: interval 0 lets the charger choose its own wait.
            wait = float(self._boot_interval or 10)
            try:
                # A BootNotification triggered while Pending may be accepted meanwhile.
                async with asyncio.timeout(wait):
                    await self._accepted.wait()
                return
            except TimeoutError:
                continue

    async def _send_boot(self, reason: str) -> bool:
        reply = await self.call("BootNotification", self._boot_payload(reason))
        self.boot_status = reply["status"]
        interval = int(reply.get("interval") or 0)
        self._boot_interval = interval
        if self.boot_status != "Accepted":
            return False
        if interval > 0:
            self.settings[HEARTBEAT[1] if self.v2 else HEARTBEAT[0]].value = str(interval)
        self._accepted.set()
        return True

    def _boot_payload(self, reason: str) -> Payload:
        if self.v2:
            station: Payload = {
                "vendorName": self.cfg.vendor,
                "model": self.cfg.model,
                "firmwareVersion": "1.0.0",
                "serialNumber": f"SN-{self.cfg.id}"[:25],
            }
            return {"reason": reason, "chargingStation": station}
        return {
            "chargePointVendor": self.cfg.vendor,
            "chargePointModel": self.cfg.model,
            "firmwareVersion": "1.0.0",
            "chargePointSerialNumber": f"SN-{self.cfg.id}"[:25],
        }

    async def _tick(self) -> None:
        """Heartbeats and periodic meter values from one task per station."""
        loop = asyncio.get_running_loop()
        beat_at = meter_at = loop.time()
        while True:
            beat_s = int(self._setting(HEARTBEAT)) or 86400
            meter_s = int(self._setting(METER)) or 86400  # 0 switches sampling off
            beat_at, meter_at = max(beat_at, loop.time()), max(meter_at, loop.time())
            next_beat, next_meter = beat_at + beat_s, meter_at + meter_s
            await asyncio.sleep(max(min(next_beat, next_meter) - loop.time(), 0.0))
            now = loop.time()
            if now >= next_beat:
                beat_at = now
                await self._quietly(self.heartbeat())
            if now >= next_meter:
                meter_at = now
                for c in self.connectors.values():
                    if c.transaction is not None:
                        await self._quietly(self.send_meter(c.id))

    @staticmethod
    async def _quietly(coro: Any) -> None:
        # The next tick tries again; a dead link ends the session elsewhere.
        with contextlib.suppress(CallFailed):
            await coro

    async def wait_connected(self, timeout: float = 5) -> None:
        """Until booted, accepted and statuses sent."""
        async with asyncio.timeout(timeout):
            await self._up.wait()

    async def close(self) -> None:
        """Disconnect for good."""
        self._closing = True
        link = self._link
        if link is not None:
            await link.ws.close()

    async def call(self, action: str, payload: Payload, timeout: float = 30) -> Payload:
        """One CALL to the CSMS; CallFailed if offline, refused or unanswered."""
        link = self._link
        if link is None:
            raise CallFailed(f"{self.cfg.id}: not connected")
        return await link.call(action, payload, timeout)

    # -- what a driver does ------------------------------------------------------------

    async def plug_in(self, connector: int = 1) -> None:
        """Cable plugged: Preparing (1.6) / Occupied (2.x)."""
        c = self.connectors[connector]
        self._settle(c)
        if not c.plugged:
            c.plugged, c.soc = True, round(self.rnd.uniform(20, 70), 1)
        await self._report(c, force=True)

    async def set_status(self, connector: int, status: str, error_code: str = "NoError") -> None:
        """StatusNotification for a connector with exactly this status."""
        c = self.connectors[connector]
        c.status = status
        if self.v2:
            payload: Payload = {
                "timestamp": now_iso(),
                "connectorStatus": self._wire_status(status),
                "evseId": connector,
                "connectorId": 1,
            }
        else:
            v16_status = "Preparing" if status == "Occupied" else status
            payload = {
                "connectorId": connector,
                "errorCode": error_code,
                "status": v16_status,
                "timestamp": now_iso(),
            }
        await self.call("StatusNotification", payload)

    async def _report(self, c: Connector, force: bool = False) -> None:
        """Report the derived status when it changed (2.x: when its 2.x name changed)."""
        status = self._derived_status(c)
        if force or self._wire_status(status) != self._wire_status(c.status):
            await self.set_status(c.id, status)
        c.status = status

    def _wire_status(self, status: str) -> str:
        return "Occupied" if self.v2 and status in OCCUPIED else status

    async def heartbeat(self) -> None:
        """Heartbeat."""
        await self.call("Heartbeat", {})

    async def start(
        self,
        connector: int = 1,
        id_tag: str = "SIMTAG",
        *,
        remote_start_id: int | None = None,
        remote: bool = False,
    ) -> str | None:
        """Authorize, then start a transaction; returns its id (None if refused)."""
        c = self.connectors[connector]
        if c.transaction is not None:
            return c.transaction
        if not c.operative:
            self.say(f"{self.cfg.id}: connector {connector} is unavailable")
            return None
        if not c.plugged:
            await self.plug_in(connector)
        remote = remote or remote_start_id is not None
        # OCPP 1.6 §5.11 AuthorizeRemoteTxRequests / 2.0.1 AuthCtrlr.AuthorizeRemoteStart.
        if (not remote or self._setting(AUTH_REMOTE) == "true") and not await self._authorize(
            id_tag
        ):
            return None
        self._settle(c)
        if self.v2:
            tx = await self._start_v2(c, id_tag, remote_start_id, remote)
        else:
            tx = await self._start_v16(c, id_tag)
        if tx is not None:
            self.say(f"{self.cfg.id}: session started on connector {connector} ({id_tag})")
        return tx

    async def _authorize(self, id_tag: str) -> bool:
        if self.v2:
            reply = await self.call("Authorize", {"idToken": self._token(id_tag)})
            status = reply["idTokenInfo"]["status"]
        else:
            reply = await self.call("Authorize", {"idTag": id_tag})
            status = reply["idTagInfo"]["status"]
        if status != "Accepted":
            self.say(f"{self.cfg.id}: tag {id_tag} {status}")
        return bool(status == "Accepted")

    @staticmethod
    def _token(id_tag: str) -> Payload:
        return {"idToken": id_tag, "type": "ISO14443"}

    async def _start_v16(self, c: Connector, id_tag: str) -> str | None:
        reply = await self.call(
            "StartTransaction",
            {
                "connectorId": c.id,
                "idTag": id_tag,
                "meterStart": int(c.energy_wh),
                "timestamp": now_iso(),
            },
        )
        c.transaction, c.id_tag, c.started = str(reply["transactionId"]), id_tag, datetime.now(UTC)
        if reply["idTagInfo"]["status"] != "Accepted":
            # OCPP 1.6 §9.1 StopTransactionOnInvalidId: the CSMS refused the tag after all.
            await self.stop(c.id, "DeAuthorized")
            return None
        await self._report(c)
        return c.transaction

    async def _start_v2(
        self, c: Connector, id_tag: str, remote_start_id: int | None, remote: bool
    ) -> str | None:
        c.transaction, c.seq_no, c.id_tag = uuid.uuid4().hex, 0, id_tag
        c.started, c.remote_start_id = datetime.now(UTC), remote_start_id
        trigger = "RemoteStart" if remote else "Authorized"
        reply = await self._tx_event(c, "Started", trigger, id_token=True)
        info = reply.get("idTokenInfo") or {}
        if info.get("status", "Accepted") != "Accepted":
            await self.stop(c.id, "DeAuthorized")
            return None
        await self._report(c)
        return c.transaction

    async def stop(self, connector: int = 1, reason: str = "Local") -> None:
        """Stop the running transaction of a connector; the cable is then unplugged."""
        c = self.connectors[connector]
        if c.transaction is None:
            return
        self._settle(c)
        try:
            if self.v2:
                trigger, stopped = V2_STOP.get(reason, ("StopAuthorized", reason))
                await self._tx_event(c, "Ended", trigger, stopped_reason=stopped)
            else:
                await self.call("StopTransaction", self._stop_payload(c, reason))
        finally:
            self._end(c)
        if not self.v2:
            await self.set_status(connector, "Finishing")
        await self._report(c, force=self.v2)
        self.say(f"{self.cfg.id}: session stopped on connector {connector} ({reason})")
        if self._reset_when_idle and all(x.transaction is None for x in self.connectors.values()):
            self._reset_when_idle = False
            self._boot_reason = "RemoteReset"
            self._reboot.set()

    def _stop_payload(self, c: Connector, reason: str) -> Payload:
        return {
            "transactionId": int(c.transaction or 0),
            "idTag": c.id_tag or "SIMTAG",
            "meterStop": int(c.energy_wh),
            "timestamp": now_iso(),
            "reason": reason,
        }

    def _end(self, c: Connector) -> None:
        """Transaction over, cable out; its TxProfiles go with it (OCPP 1.6 §3.13.1)."""
        self.profiles = [
            p for p in self.profiles if not (p.purpose == "TxProfile" and p.connector == c.id)
        ]
        c.transaction, c.discharge_a, c.remote_start_id, c.plugged = None, 0.0, None, False
        if c.inoperative_later:
            c.inoperative_later, c.operative = False, False

    async def discharge(self, connector: int = 1, amps: float = 0.0) -> None:
        """The car asks to feed back `amps` per phase (V2G stations only); 0 ends it."""
        c = self.connectors[connector]
        before = self.draw_a(connector)
        self._settle(c)
        c.discharge_a = abs(amps) if self.cfg.v2g else 0.0
        if c.transaction is not None and self.draw_a(connector) != before:
            await self._rate_changed(c)

    async def send_meter(self, connector: int = 1, energy_wh: float | None = None) -> None:
        """MeterValues (1.6, 2.x idle) or TransactionEvent(Updated) (2.x) with the readings."""
        c = self.connectors[connector]
        self._settle(c)
        if energy_wh is not None:
            c.energy_wh = max(c.energy_wh, energy_wh)  # a meter never runs backwards
        if self.v2 and c.transaction is not None:
            await self._tx_event(c, "Updated", "MeterValuePeriodic")
        elif self.v2:
            meter = self._meter_value(c, "Sample.Periodic")
            await self.call("MeterValues", {"evseId": c.id, "meterValue": [meter]})
        else:
            payload: Payload = {
                "connectorId": c.id,
                "meterValue": [self._meter_value(c, "Sample.Periodic")],
            }
            if c.transaction is not None:
                payload["transactionId"] = int(c.transaction)
            await self.call("MeterValues", payload)

    def _samples(self, c: Connector) -> list[tuple[str, float, str, str | None, str | None]]:
        """(measurand, value, unit, phase, location); signed per edge.domain.units."""
        amps = self.draw_a(c.id)
        out: list[tuple[str, float, str, str | None, str | None]] = [
            ("Energy.Active.Import.Register", round(c.energy_wh, 1), "Wh", None, None),
            ("Power.Active.Import", round(amps * VOLTS * self.cfg.phases, 1), "W", None, None),
        ]
        for phase in ("L1", "L2", "L3")[: self.cfg.phases]:
            out.append(("Current.Import", round(amps, 2), "A", phase, None))
        if self.cfg.v2g:
            out.append(("Energy.Active.Export.Register", round(c.export_wh, 1), "Wh", None, None))
        if c.plugged:
            out.append(("SoC", round(c.soc), "Percent", None, "EV"))
        return out

    def _meter_value(self, c: Connector, context: str) -> Payload:
        """One MeterValue: 1.6 §7.31 (string values, unit) or 2.x (numbers, unitOfMeasure)."""
        samples = []
        for measurand, value, unit, phase, location in self._samples(c):
            sv: Payload = {"measurand": measurand, "context": context}
            if self.v2:
                sv |= {"value": value, "unitOfMeasure": {"unit": unit}}
            else:
                sv |= {"value": str(value), "unit": unit}
            if phase:
                sv["phase"] = phase
            if location:
                sv["location"] = location
            samples.append(sv)
        return {"timestamp": now_iso(), "sampledValue": samples}

    async def _tx_event(
        self,
        c: Connector,
        event: str,
        trigger: str,
        *,
        id_token: bool = False,
        stopped_reason: str | None = None,
    ) -> Payload:
        """TransactionEvent; seqNo counts up from 0 per transaction (OCPP 2.0.1 E01)."""
        info: Payload = {"transactionId": c.transaction}
        if event == "Ended":
            info["stoppedReason"] = stopped_reason or "Local"
        else:
            draw = self.draw_a(c.id)
            info["chargingState"] = "Charging" if draw else "SuspendedEVSE"
        if event == "Started" and c.remote_start_id is not None:
            info["remoteStartId"] = c.remote_start_id
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}
        payload: Payload = {
            "eventType": event,
            "timestamp": now_iso(),
            "triggerReason": trigger,
            "seqNo": c.seq_no,
            "transactionInfo": info,
            "evse": {"id": c.id, "connectorId": 1},
            "meterValue": [self._meter_value(c, context.get(event, "Sample.Periodic"))],
        }
        if id_token and c.id_tag:
            payload["idToken"] = self._token(c.id_tag)
        c.seq_no += 1
        return await self.call("TransactionEvent", payload)

    async def _rate_changed(self, c: Connector) -> None:
        """Tell the CSMS the draw changed: 2.x ChargingRateChanged, 1.6 a new status."""
        if self.v2:
            await self._tx_event(c, "Updated", "ChargingRateChanged")
        else:
            await self._report(c)

    # -- what the CSMS asks ------------------------------------------------------------

    def _respond(self, action: str, payload: Payload) -> Answer | None:
        """Answer a CSMS CALL; None means CALLERROR NotImplemented (OCPP-J 1.6 §4.2.3)."""
        self.received.append((action, payload))
        self.say(f"{self.cfg.id}: {action} from the central system")
        handler: Callable[[Payload], Answer] | None = getattr(self, f"_on_{action}", None)
        if handler is None or action in (V16_ONLY if self.v2 else V2_ONLY):
            return None
        return handler(payload)

    def _free_connector(self, wanted: int | None) -> Connector | None:
        if wanted is not None:
            c = self.connectors.get(wanted)
            return c if c and c.transaction is None and c.operative else None
        return next(
            (c for c in self.connectors.values() if c.transaction is None and c.operative), None
        )

    def _find_tx(self, tx: Any) -> Connector | None:
        return next((c for c in self.connectors.values() if c.transaction == str(tx)), None)

    def _on_RemoteStartTransaction(self, p: Payload) -> Answer:
        c = self._free_connector(p.get("connectorId"))
        if c is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, lambda: self._remote_start(
            c.id, p["idTag"], None, p.get("chargingProfile")
        )

    def _on_RequestStartTransaction(self, p: Payload) -> Answer:
        c = self._free_connector(p.get("evseId"))
        if c is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, lambda: self._remote_start(
            c.id, p["idToken"]["idToken"], p["remoteStartId"], p.get("chargingProfile")
        )

    async def _remote_start(
        self, connector: int, id_tag: str, remote_start_id: int | None, profile: Payload | None
    ) -> None:
        tx = await self.start(connector, id_tag, remote_start_id=remote_start_id, remote=True)
        if tx is not None and profile is not None:
            # OCPP 1.6 §5.11: a TxProfile sent with the remote start applies to this session.
            c = self.connectors[connector]
            self._settle(c)
            self._install(parse_profile(profile, connector, self.cfg.phases))
            await self._rate_changed(c)

    def _on_RemoteStopTransaction(self, p: Payload) -> Answer:
        return self._remote_stop(p["transactionId"])

    def _on_RequestStopTransaction(self, p: Payload) -> Answer:
        return self._remote_stop(p["transactionId"])

    def _remote_stop(self, tx: Any) -> Answer:
        c = self._find_tx(tx)
        if c is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, lambda: self.stop(c.id, "Remote")

    def _on_Reset(self, p: Payload) -> Answer:
        busy = any(c.transaction is not None for c in self.connectors.values())
        if self.v2 and p["type"] == "OnIdle" and busy:
            self._reset_when_idle = True  # OCPP 2.0.1 B12: reset once the sessions end
            return {"status": "Scheduled"}, None
        reason = "ImmediateReset" if self.v2 else f"{p['type']}Reset"
        return {"status": "Accepted"}, lambda: self._reset(reason)

    async def _reset(self, reason: str) -> None:
        # OCPP 1.6 §5.14: stop the sessions, then restart and boot again.
        for c in self.connectors.values():
            if c.transaction is not None:
                await self.stop(c.id, reason)
        self._boot_reason = "RemoteReset"
        self._reboot.set()

    def _on_UnlockConnector(self, p: Payload) -> Answer:
        connector = p["evseId"] if self.v2 else p["connectorId"]
        c = self.connectors.get(connector)
        if c is None:
            return {"status": "UnknownConnector" if self.v2 else "NotSupported"}, None
        if c.transaction is not None:
            if self.v2:  # OCPP 2.0.1 F05.FR.02
                return {"status": "OngoingAuthorizedTransaction"}, None
            # OCPP 1.6 §5.18: unlocking stops the session first.
            return {"status": "Unlocked"}, lambda: self.stop(c.id, "UnlockCommand")
        return {"status": "Unlocked"}, None

    def _on_ChangeAvailability(self, p: Payload) -> Answer:
        if self.v2:
            operative = p["operationalStatus"] == "Operative"
            target = (p.get("evse") or {}).get("id", 0)
        else:
            operative, target = p["type"] == "Operative", p["connectorId"]
        if target and target not in self.connectors:
            return {"status": "Rejected"}, None
        targets = [self.connectors[target]] if target else list(self.connectors.values())
        scheduled = False
        for c in targets:
            self._settle(c)
            if not operative and c.transaction is not None:
                c.inoperative_later, scheduled = True, True  # OCPP 1.6 §5.2: after the session
            else:
                c.operative, c.inoperative_later = operative, False

        async def report() -> None:
            for c in targets:
                await self._report(c)

        return {"status": "Scheduled" if scheduled else "Accepted"}, report

    def _on_TriggerMessage(self, p: Payload) -> Answer:
        message = p["requestedMessage"]
        wanted = (p.get("evse") or {}).get("id") if self.v2 else p.get("connectorId")
        if wanted and wanted not in self.connectors:
            return {"status": "Rejected"}, None
        targets = [self.connectors[wanted]] if wanted else list(self.connectors.values())
        action = self._triggered(message, targets)
        if action is None:
            return {"status": "NotImplemented"}, None
        return {"status": "Accepted"}, action

    def _triggered(self, message: str, targets: list[Connector]) -> Callable[[], Any] | None:
        """The follow-up for a TriggerMessage (OCPP 1.6 §5.17, 2.0.1 F06)."""
        idle = "Idle"
        if message == "BootNotification":
            return lambda: self._send_boot("Triggered")
        if message == "Heartbeat":
            return self.heartbeat
        if message == "StatusNotification":
            return lambda: self._each(targets, lambda c: self.set_status(c.id, c.status))
        if message == "MeterValues":
            return lambda: self._each(targets, self._triggered_meter)
        if message == "TransactionEvent" and self.v2:
            busy = [c for c in targets if c.transaction is not None]
            return lambda: self._each(busy, lambda c: self._tx_event(c, "Updated", "Trigger"))
        if message == "FirmwareStatusNotification":
            return lambda: self.call("FirmwareStatusNotification", {"status": idle})
        if message == "DiagnosticsStatusNotification" and not self.v2:
            return lambda: self.call("DiagnosticsStatusNotification", {"status": idle})
        if message == "LogStatusNotification" and self.v2:
            return lambda: self.call("LogStatusNotification", {"status": idle})
        return None

    @staticmethod
    async def _each(targets: list[Connector], send: Callable[[Connector], Any]) -> None:
        for c in targets:
            await send(c)

    async def _triggered_meter(self, c: Connector) -> None:
        self._settle(c)
        meter = self._meter_value(c, "Trigger")
        if self.v2:
            await self.call("MeterValues", {"evseId": c.id, "meterValue": [meter]})
            return
        payload: Payload = {"connectorId": c.id, "meterValue": [meter]}
        if c.transaction is not None:
            payload["transactionId"] = int(c.transaction)
        await self.call("MeterValues", payload)

    def _on_GetConfiguration(self, p: Payload) -> Answer:
        keys = p.get("key") or list(self.settings)
        known = [
            {"key": k, "readonly": self.settings[k].readonly, "value": self.settings[k].value}
            for k in keys
            if k in self.settings
        ]
        unknown = [k for k in keys if k not in self.settings]
        return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}, None

    def _on_ChangeConfiguration(self, p: Payload) -> Answer:
        setting = self.settings.get(p["key"])
        if setting is None:
            return {"status": "NotSupported"}, None
        if setting.readonly or not setting.accepts(p["value"]):
            return {"status": "Rejected"}, None
        setting.value = p["value"]
        return {"status": "Accepted"}, None

    def _variable(self, d: Payload) -> tuple[str, Setting | None]:
        """(attributeStatus if unknown, setting) for a 2.x component/variable pair."""
        component, variable = d["component"]["name"], d["variable"]["name"]
        if not any(k.startswith(f"{component}.") for k in self.settings):
            return "UnknownComponent", None
        setting = self.settings.get(f"{component}.{variable}")
        return ("Accepted", setting) if setting else ("UnknownVariable", None)

    def _on_GetVariables(self, p: Payload) -> Answer:
        results = []
        for d in p["getVariableData"]:
            status, setting = self._variable(d)
            result: Payload = {"component": d["component"], "variable": d["variable"]}
            if d.get("attributeType", "Actual") != "Actual" and setting:
                status = "NotSupportedAttributeType"
            result["attributeStatus"] = status
            if status == "Accepted" and setting:
                result["attributeValue"] = setting.value
            results.append(result)
        return {"getVariableResult": results}, None

    def _on_SetVariables(self, p: Payload) -> Answer:
        results = []
        for d in p["setVariableData"]:
            status, setting = self._variable(d)
            if setting is not None and d.get("attributeType", "Actual") != "Actual":
                status = "NotSupportedAttributeType"
            elif setting is not None and (
                setting.readonly or not setting.accepts(d["attributeValue"])
            ):
                status = "Rejected"
            elif setting is not None:
                setting.value = d["attributeValue"]
            results.append(
                {"attributeStatus": status, "component": d["component"], "variable": d["variable"]}
            )
        return {"setVariableResult": results}, None

    def _on_ClearCache(self, p: Payload) -> Answer:
        return {"status": "Accepted"}, None

    def _on_SendLocalList(self, p: Payload) -> Answer:
        version = p["versionNumber"] if self.v2 else p["listVersion"]
        if p["updateType"] == "Differential" and version <= self.local_list_version:
            return {"status": "VersionMismatch"}, None  # OCPP 1.6 §5.15
        if p["updateType"] == "Full":
            self.local_list.clear()
        for entry in p.get("localAuthorizationList") or []:
            tag = entry["idToken"]["idToken"] if self.v2 else entry["idTag"]
            info = entry.get("idTokenInfo" if self.v2 else "idTagInfo")
            if info is None:
                self.local_list.pop(tag, None)
            else:
                self.local_list[tag] = info["status"]
        self.local_list_version = version
        return {"status": "Accepted"}, None

    def _on_GetLocalListVersion(self, p: Payload) -> Answer:
        key = "versionNumber" if self.v2 else "listVersion"
        return {key: self.local_list_version}, None

    def _on_UpdateFirmware(self, p: Payload) -> Answer:
        extra = {"requestId": p["requestId"]} if self.v2 else {}

        async def progress() -> None:
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await asyncio.sleep(STEP_S)
                await self.call("FirmwareStatusNotification", {"status": status, **extra})

        # OCPP 1.6 §6.52: UpdateFirmware.conf has no fields.
        return ({"status": "Accepted"} if self.v2 else {}), progress

    def _on_GetDiagnostics(self, p: Payload) -> Answer:
        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                await asyncio.sleep(STEP_S)
                await self.call("DiagnosticsStatusNotification", {"status": status})

        return {"fileName": f"{self.cfg.id}-diagnostics.log"}, upload

    def _on_GetLog(self, p: Payload) -> Answer:
        async def upload() -> None:
            for status in ("Uploading", "Uploaded"):
                await asyncio.sleep(STEP_S)
                payload = {"status": status, "requestId": p["requestId"]}
                await self.call("LogStatusNotification", payload)

        return {"status": "Accepted", "filename": f"{self.cfg.id}.log"}, upload

    def _on_SetChargingProfile(self, p: Payload) -> Answer:
        if self.v2:
            raw, connector = p["chargingProfile"], p["evseId"]
        else:
            raw, connector = p["csChargingProfiles"], p["connectorId"]
        profile = parse_profile(raw, connector, self.cfg.phases)
        if not self._supported(raw) or not self._acceptable(profile):
            return {"status": "Rejected"}, None
        before = self._settle_all()
        self._install(profile)
        return {"status": "Accepted"}, self._after_limits(before)

    def _supported(self, raw: Payload) -> bool:
        """The rate unit and period count this charger model takes (OCPP 1.6 §3.13.5)."""
        schedules = raw["chargingSchedule"]
        for schedule in schedules if isinstance(schedules, list) else [schedules]:
            if schedule["chargingRateUnit"] not in self.cfg.profile_units:
                return False
            if len(schedule["chargingSchedulePeriod"]) > self.cfg.max_periods:
                return False
        return True

    def _acceptable(self, profile: Profile) -> bool:
        """OCPP 1.6 §3.13.1 / 2.0.1 K01 rules on where a profile may go."""
        c = self.connectors.get(profile.connector)
        if profile.connector and c is None:
            return False
        if profile.stack_level > MAX_STACK_LEVEL or not profile.periods:
            return False
        if profile.purpose in MAX_PURPOSES:
            return profile.connector == 0
        if profile.purpose == "TxProfile":
            return (
                c is not None
                and c.transaction is not None
                and profile.transaction in (None, c.transaction)
            )
        return True

    def _install(self, profile: Profile) -> None:
        """Same id, or same purpose and stack level on the connector, is replaced."""
        self.profiles = [
            p
            for p in self.profiles
            if p.id != profile.id
            and not (
                p.connector == profile.connector
                and p.purpose == profile.purpose
                and p.stack_level == profile.stack_level
            )
        ]
        self.profiles.append(profile)

    def _after_limits(self, before: dict[int, float]) -> Callable[[], Any]:
        async def notify() -> None:
            for i, c in self.connectors.items():
                if c.transaction is not None and self.draw_a(i) != before[i]:
                    await self._rate_changed(c)

        return notify

    def _on_ClearChargingProfile(self, p: Payload) -> Answer:
        if self.v2:
            wanted_id = p.get("chargingProfileId")
            criteria = p.get("chargingProfileCriteria") or {}
            connector = criteria.get("evseId")
        else:
            wanted_id, criteria, connector = p.get("id"), p, p.get("connectorId")
        purpose, stack = criteria.get("chargingProfilePurpose"), criteria.get("stackLevel")

        def matches(prof: Profile) -> bool:
            if wanted_id is not None:
                return bool(prof.id == wanted_id)
            return (
                (connector is None or prof.connector == connector)
                and (purpose is None or prof.purpose == purpose)
                and (stack is None or prof.stack_level == stack)
            )

        before = self._settle_all()
        kept = [prof for prof in self.profiles if not matches(prof)]
        if len(kept) == len(self.profiles):
            return {"status": "Unknown"}, None
        self.profiles = kept
        return {"status": "Accepted"}, self._after_limits(before)

    def _on_GetCompositeSchedule(self, p: Payload) -> Answer:
        connector = p["evseId"] if self.v2 else p["connectorId"]
        if connector and connector not in self.connectors:
            return {"status": "Rejected"}, None
        unit = p.get("chargingRateUnit") or "A"
        amps = (
            self.limit_a[connector]
            if connector
            else min(self.limit_a.values(), default=self.cfg.max_current_a)
        )
        limit = amps * VOLTS * self.cfg.phases if unit == "W" else amps
        period = {"startPeriod": 0, "limit": round(limit, 1), "numberPhases": self.cfg.phases}
        schedule: Payload = {
            "duration": p["duration"],
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [period],
        }
        if self.v2:
            composite = {"evseId": connector, "scheduleStart": now_iso(), **schedule}
            return {"status": "Accepted", "schedule": composite}, None
        return {
            "status": "Accepted",
            "connectorId": connector,
            "scheduleStart": now_iso(),
            "chargingSchedule": schedule,
        }, None

    def _on_DataTransfer(self, p: Payload) -> Answer:
        return {"status": "UnknownVendorId"}, None
