"""One simulated charging station speaking OCPP-J 1.6, 2.0.1 or 2.1 over raw websockets.

A good citizen: one outstanding CALL at a time (OCPP-J 1.6 §4.1.1), a schema-valid answer
to every command it knows and CALLERROR NotImplemented for the rest, charging limits
followed, an energy register integrated from what it draws, reconnects with backoff.
The answers to the central system's commands are in edge/sim/charger_commands.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
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

from edge.sim import charger_commands
from edge.sim.profiles import MAX_PURPOSES, VOLTS, Period, Profile, prevailing
from edge.sim.settings import v2_settings, v16_settings
from edge.sim.wire import CallFailed, Link, Payload, now_iso

__all__ = ["CallFailed", "Connector", "Profile", "SimCharger", "SimStation"]

BATTERY_WH = 60_000.0
MIN_V2G_SOC = 20.0  # the car keeps this much for driving
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
    # what it samples at first (MeterValuesSampledData / TxUpdatedMeasurands, CSL);
    # None: energy, power, current and SoC (and the export register on a V2G station)
    measurands: str | None = None


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
SAMPLED = ("MeterValuesSampledData", "SampledDataCtrlr.TxUpdatedMeasurands")


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
        self._retime = asyncio.Event()
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

    def settle(self, c: Connector) -> None:
        """Integrate energy and SoC up to now; call before anything that changes the draw."""
        now = self.clock()
        hours, c.updated = max(now - c.updated, 0.0) / 3600, now
        wh = self.draw_a(c.id) * VOLTS * self.cfg.phases * hours
        if wh >= 0:
            c.energy_wh += wh
        else:
            c.export_wh -= wh
        c.soc = min(max(c.soc + wh / BATTERY_WH * 100, 0.0), 100.0)

    def settle_all(self) -> dict[int, float]:
        for c in self.connectors.values():
            self.settle(c)
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
        self.say(f"{self.cfg.id}: connected (OCPP {self.cfg.version})")
        respond = functools.partial(charger_commands.respond, self)
        self._link = Link(ws, self.cfg.id, respond, v2=self.v2)
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
        if self._link is not None:
            self.say(f"{self.cfg.id}: disconnected")
        self.connected = False
        self._up.clear()
        self._accepted.clear()
        self._link = None

    async def _lifecycle(self) -> None:
        await self._boot()
        for c in self.connectors.values():
            await self.report(c, force=True)
        self.connected = True
        self._up.set()
        await self._tick()

    async def _boot(self) -> None:
        """BootNotification until Accepted, waiting the interval the CSMS gives (OCPP 1.6 §4.2)."""
        while True:
            if await self.send_boot(self._boot_reason):
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

    async def send_boot(self, reason: str) -> bool:
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
            self._retime.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(min(next_beat, next_meter) - loop.time(), 0.0)):
                    await self._retime.wait()  # an interval changed: plan anew
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
        self.settle(c)
        if not c.plugged:
            c.plugged, c.soc = True, round(self.rnd.uniform(20, 70), 1)
        await self.report(c, force=True)

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

    async def report(self, c: Connector, force: bool = False) -> None:
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
        self.settle(c)
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
        await self.report(c)
        return c.transaction

    async def _start_v2(
        self, c: Connector, id_tag: str, remote_start_id: int | None, remote: bool
    ) -> str | None:
        c.transaction, c.seq_no, c.id_tag = uuid.uuid4().hex, 0, id_tag
        c.started, c.remote_start_id = datetime.now(UTC), remote_start_id
        trigger = "RemoteStart" if remote else "Authorized"
        reply = await self.tx_event(c, "Started", trigger, id_token=True)
        info = reply.get("idTokenInfo") or {}
        if info.get("status", "Accepted") != "Accepted":
            await self.stop(c.id, "DeAuthorized")
            return None
        await self.report(c)
        return c.transaction

    async def stop(self, connector: int = 1, reason: str = "Local") -> None:
        """Stop the running transaction of a connector; the cable is then unplugged."""
        c = self.connectors[connector]
        if c.transaction is None:
            return
        self.settle(c)
        try:
            if self.v2:
                trigger, stopped = V2_STOP.get(reason, ("StopAuthorized", reason))
                await self.tx_event(c, "Ended", trigger, stopped_reason=stopped)
            else:
                await self.call("StopTransaction", self._stop_payload(c, reason))
        finally:
            self._end(c)
        if not self.v2:
            await self.set_status(connector, "Finishing")
        await self.report(c, force=self.v2)
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
        self.settle(c)
        c.discharge_a = abs(amps) if self.cfg.v2g else 0.0
        if c.transaction is not None and self.draw_a(connector) != before:
            await self.rate_changed(c)

    async def send_meter(self, connector: int = 1, energy_wh: float | None = None) -> None:
        """MeterValues (1.6, 2.x idle) or TransactionEvent(Updated) (2.x) with the readings."""
        c = self.connectors[connector]
        self.settle(c)
        if energy_wh is not None:
            c.energy_wh = max(c.energy_wh, energy_wh)  # a meter never runs backwards
        if self.v2 and c.transaction is not None:
            await self.tx_event(c, "Updated", "MeterValuePeriodic")
        elif self.v2:
            meter = self.meter_value(c, "Sample.Periodic")
            await self.call("MeterValues", {"evseId": c.id, "meterValue": [meter]})
        else:
            payload: Payload = {
                "connectorId": c.id,
                "meterValue": [self.meter_value(c, "Sample.Periodic")],
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
        sampled = {m.strip() for m in self._setting(SAMPLED).split(",")}
        return [sample for sample in out if sample[0] in sampled]

    def meter_value(self, c: Connector, context: str) -> Payload:
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

    async def tx_event(
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
            "meterValue": [self.meter_value(c, context.get(event, "Sample.Periodic"))],
        }
        if id_token and c.id_tag:
            payload["idToken"] = self._token(c.id_tag)
        c.seq_no += 1
        return await self.call("TransactionEvent", payload)

    async def rate_changed(self, c: Connector) -> None:
        """Tell the CSMS the draw changed: 2.x ChargingRateChanged, 1.6 a new status."""
        if self.v2:
            await self.tx_event(c, "Updated", "ChargingRateChanged")
        else:
            await self.report(c)

    async def reset(self, reason: str) -> None:
        """Stop the sessions, then restart and boot again (OCPP 1.6 §5.14)."""
        for c in self.connectors.values():
            if c.transaction is not None:
                await self.stop(c.id, reason)
        self._boot_reason = "RemoteReset"
        self._reboot.set()

    def reset_when_idle(self) -> None:
        """Reset once the last session ends (OCPP 2.0.1 B12 OnIdle)."""
        self._reset_when_idle = True

    def retime(self) -> None:
        """A heartbeat or sampling interval changed: the next ones follow it at once."""
        self._retime.set()
