"""One simulated charging station speaking OCPP-J 1.6, 2.0.1 or 2.1 over raw websockets.

A good citizen: one outstanding CALL at a time (OCPP-J 1.6 §4.1.1), answers every CSMS
command with a schema-valid payload, follows charging limits, integrates its energy
register from what it draws, reconnects with backoff and boots again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

Payload = dict[str, Any]
VOLTS = 230.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


@dataclass
class Connector:
    id: int
    status: str = "Available"
    transaction: str | None = None  # 1.6: the CSMS's id as text; 2.x: ours
    id_tag: str | None = None
    seq_no: int = 0
    energy_wh: float = 0.0
    export_wh: float = 0.0
    limit_a: float | None = None
    discharge_a: float = 0.0
    updated: float = field(default_factory=time.monotonic)


class CallFailed(Exception):
    """The CSMS answered a CALL with a CALLERROR, or not at all."""


class SimCharger:
    """A simulated station; `run()` keeps it connected until `close()`."""

    def __init__(
        self,
        cfg: SimStation,
        url: str,
        *,
        ssl: Any = None,
        say: Callable[[str], None] | None = None,
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.url = url.rstrip("/")
        self.ssl = ssl
        self.say = say or (lambda line: None)
        self.v2 = cfg.version != "1.6"
        rnd = random.Random(f"{seed}-{cfg.id}")
        self.connectors = {
            i: Connector(i, energy_wh=rnd.uniform(1e5, 5e6)) for i in range(1, cfg.connectors + 1)
        }
        self.received: list[tuple[str, Payload]] = []
        self.connected = False
        self.boot_status: str | None = None
        self.heartbeat_interval = 300.0
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        self._up = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.config_keys: dict[str, tuple[str, bool]] = {
            "HeartbeatInterval": ("300", False),
            "MeterValueSampleInterval": (str(int(cfg.meter_interval_s)), False),
            "NumberOfConnectors": (str(cfg.connectors), True),
            "AuthorizeRemoteTxRequests": ("false", False),
            "ChargeProfileMaxStackLevel": ("8", True),
        }

    @property
    def limit_a(self) -> dict[int, float]:
        """Current limit per connector from the CSMS's profiles (max current if none)."""
        return {
            i: c.limit_a if c.limit_a is not None else self.cfg.max_current_a
            for i, c in self.connectors.items()
        }

    def draw_a(self, connector: int = 1) -> float:
        """What the car draws now (A per phase); negative while discharging."""
        c = self.connectors[connector]
        if c.transaction is None or c.status not in ("Charging", "Occupied"):
            return 0.0
        if c.discharge_a:
            return -min(c.discharge_a, self.limit_a[connector])
        return min(self.limit_a[connector], self.cfg.car_max_current_a)

    # -- connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, boot, keep alive; reconnect with capped backoff until closed."""
        backoff = 1.0
        while not self._closing:
            try:
                headers = None
                if self.cfg.password:
                    import base64

                    token = base64.b64encode(f"{self.cfg.id}:{self.cfg.password}".encode())
                    headers = {"Authorization": f"Basic {token.decode()}"}
                async with connect(
                    f"{self.url}/{self.cfg.id}",
                    ssl=self.ssl,
                    subprotocols=[f"ocpp{self.cfg.version}"],  # type: ignore[list-item]
                    additional_headers=headers,
                    open_timeout=10,
                ) as ws:
                    backoff = 1.0
                    await self._session(ws)
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                if isinstance(exc, InvalidStatus):
                    self.say(f"{self.cfg.id}: refused ({exc.response.status_code})")
            finally:
                self.connected = False
                self._up.clear()
                self._ws = None
            if self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        reader = asyncio.create_task(self._read(ws))
        try:
            await self._boot()
            for c in self.connectors.values():
                await self.set_status(c.id, c.status)
            self.connected = True
            self._up.set()
            self.say(f"{self.cfg.id}: connected (OCPP {self.cfg.version})")
            beat = asyncio.create_task(self._heartbeats())
            meter = asyncio.create_task(self._meter_loop())
            try:
                await reader
            finally:
                beat.cancel()
                meter.cancel()
        finally:
            reader.cancel()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CallFailed("connection closed"))
            self._pending.clear()

    async def _boot(self) -> None:
        while True:
            if self.v2:
                payload: Payload = {
                    "reason": "PowerUp",
                    "chargingStation": {
                        "vendorName": self.cfg.vendor,
                        "model": self.cfg.model,
                        "firmwareVersion": "1.0.0",
                        "serialNumber": f"SN-{self.cfg.id}",
                    },
                }
            else:
                payload = {
                    "chargePointVendor": self.cfg.vendor,
                    "chargePointModel": self.cfg.model,
                    "firmwareVersion": "1.0.0",
                    "chargePointSerialNumber": f"SN-{self.cfg.id}",
                }
            reply = await self.call("BootNotification", payload)
            self.boot_status = reply["status"]
            self.heartbeat_interval = float(reply.get("interval") or 300)
            if self.boot_status == "Accepted":
                return
            await asyncio.sleep(min(max(self.heartbeat_interval, 1.0), 60.0))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            with contextlib.suppress(CallFailed):
                await self.heartbeat()

    async def _meter_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.meter_interval_s)
            for c in self.connectors.values():
                if c.transaction is not None:
                    with contextlib.suppress(CallFailed):
                        await self.send_meter(c.id)

    async def wait_connected(self, timeout: float = 5) -> None:
        """Until booted and accepted."""
        await asyncio.wait_for(self._up.wait(), timeout)

    async def close(self) -> None:
        """Disconnect for good."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in ws:
                try:
                    frame = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if frame[0] == 2:
                    task = asyncio.create_task(self._answer(ws, frame))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif frame[0] in (3, 4):
                    fut = self._pending.pop(frame[1], None)
                    if fut is not None and not fut.done():
                        if frame[0] == 3:
                            fut.set_result(frame[2])
                        else:
                            fut.set_exception(CallFailed(f"{frame[2]}: {frame[3]}"))

    async def call(self, action: str, payload: Payload, timeout: float = 30) -> Payload:
        """One CALL at a time; returns the CALLRESULT payload."""
        async with self._lock:
            ws = self._ws
            if ws is None:
                raise CallFailed("not connected")
            uid = f"{self.cfg.id}-{next(self._ids)}"
            fut: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
            self._pending[uid] = fut
            try:
                await ws.send(orjson.dumps([2, uid, action, payload]).decode())
                return await asyncio.wait_for(fut, timeout)
            except (TimeoutError, ConnectionClosed) as exc:
                raise CallFailed(f"{action}: {exc!r}") from None
            finally:
                self._pending.pop(uid, None)

    async def _answer(self, ws: ClientConnection, frame: list[Any]) -> None:
        _, uid, action, payload = frame
        self.received.append((action, payload))
        handler = getattr(self, f"_on_{action}", None)
        try:
            if handler is None:
                reply = [4, uid, "NotImplemented", f"{action} is not known here", {}]
            else:
                result, after = handler(payload)
                reply = [3, uid, result]
        except Exception as exc:  # a simulator bug must not kill the connection
            reply = [4, uid, "InternalError", str(exc)[:200], {}]
            after = None
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(reply).decode())
        if handler is not None and after is not None:
            await asyncio.sleep(0)
            task = asyncio.create_task(after())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- what a driver does ------------------------------------------------------------

    async def plug_in(self, connector: int = 1) -> None:
        """Cable plugged: Preparing (1.6) / Occupied (2.x)."""
        await self.set_status(connector, "Occupied" if self.v2 else "Preparing")

    async def set_status(self, connector: int, status: str, error_code: str = "NoError") -> None:
        """StatusNotification for a connector."""
        c = self.connectors[connector]
        c.status = status
        if self.v2:
            v2_status = {
                "Preparing": "Occupied",
                "Charging": "Occupied",
                "Finishing": "Occupied",
                "SuspendedEV": "Occupied",
                "SuspendedEVSE": "Occupied",
            }.get(status, status)
            await self.call(
                "StatusNotification",
                {
                    "timestamp": now_iso(),
                    "connectorStatus": v2_status,
                    "evseId": connector,
                    "connectorId": 1,
                },
            )
        else:
            await self.call(
                "StatusNotification",
                {
                    "connectorId": connector,
                    "status": status,
                    "errorCode": error_code,
                    "timestamp": now_iso(),
                },
            )

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})

    def _integrate(self, c: Connector) -> None:
        now = time.monotonic()
        hours = (now - c.updated) / 3600
        c.updated = now
        draw = self.draw_a(c.id)
        energy = abs(draw) * VOLTS * self.cfg.phases * hours
        if draw >= 0:
            c.energy_wh += energy
        else:
            c.export_wh += energy

    async def start(
        self, connector: int = 1, id_tag: str = "SIMTAG", trigger: str = "Authorized"
    ) -> str | None:
        """Authorize, then start a transaction; returns its id (None if refused)."""
        c = self.connectors[connector]
        if c.transaction is not None:
            return c.transaction
        if self.v2:
            token = {"idToken": id_tag, "type": "ISO14443"}
            auth = await self.call("Authorize", {"idToken": token})
            if auth["idTokenInfo"]["status"] != "Accepted":
                self.say(f"{self.cfg.id}: tag {id_tag} {auth['idTokenInfo']['status']}")
                return None
            c.transaction, c.seq_no, c.id_tag = uuid.uuid4().hex[:20], 0, id_tag
            c.status, c.updated = "Charging", time.monotonic()
            await self._tx_event("Started", c, trigger, id_token=token)
        else:
            auth = await self.call("Authorize", {"idTag": id_tag})
            if auth["idTagInfo"]["status"] != "Accepted":
                self.say(f"{self.cfg.id}: tag {id_tag} {auth['idTagInfo']['status']}")
                return None
            reply = await self.call(
                "StartTransaction",
                {
                    "connectorId": connector,
                    "idTag": id_tag,
                    "meterStart": int(c.energy_wh),
                    "timestamp": now_iso(),
                },
            )
            c.transaction, c.id_tag = str(reply["transactionId"]), id_tag
            c.updated = time.monotonic()
            await self.set_status(connector, "Charging")
        self.say(f"{self.cfg.id}: session started on connector {connector} ({id_tag})")
        return c.transaction

    async def stop(self, connector: int = 1, reason: str = "Local") -> None:
        """Stop the running transaction of a connector."""
        c = self.connectors[connector]
        if c.transaction is None:
            return
        self._integrate(c)
        if self.v2:
            c.status = "Available"
            await self._tx_event(
                "Ended",
                c,
                "StopAuthorized"
                if reason == "Local"
                else "RemoteStop"
                if reason == "Remote"
                else "EVCommunicationLost",
                stopped_reason=reason,
            )
        else:
            await self.call(
                "StopTransaction",
                {
                    "transactionId": int(c.transaction),
                    "meterStop": int(c.energy_wh),
                    "timestamp": now_iso(),
                    "reason": reason,
                    "idTag": c.id_tag or "SIMTAG",
                },
            )
        c.transaction, c.discharge_a = None, 0.0
        await self.set_status(connector, "Available" if self.v2 else "Finishing")
        if not self.v2:
            await self.set_status(connector, "Available")
        self.say(f"{self.cfg.id}: session stopped on connector {connector} ({reason})")

    async def send_meter(self, connector: int = 1, energy_wh: float | None = None) -> None:
        """MeterValues (1.6) or TransactionEvent(Updated) (2.x) with the current readings."""
        c = self.connectors[connector]
        self._integrate(c)
        if energy_wh is not None:
            c.energy_wh = max(c.energy_wh, energy_wh)
        if self.v2 and c.transaction is not None:
            await self._tx_event("Updated", c, "MeterValuePeriodic")
            return
        payload: Payload = {"connectorId": connector, "meterValue": [self._meter_16(c)]}
        if c.transaction is not None:
            payload["transactionId"] = int(c.transaction)
        await self.call("MeterValues", payload)

    def _samples(self, c: Connector) -> list[tuple[str, float, str, str | None]]:
        draw = self.draw_a(c.id)
        phases = ("L1", "L2", "L3")[: self.cfg.phases]
        out: list[tuple[str, float, str, str | None]] = [
            ("Energy.Active.Import.Register", round(c.energy_wh, 1), "Wh", None),
            ("Power.Active.Import", round(max(draw, 0) * VOLTS * self.cfg.phases, 1), "W", None),
        ]
        out += [("Current.Import", round(max(draw, 0), 2), "A", p) for p in phases]
        if self.cfg.v2g:
            out.append(("Energy.Active.Export.Register", round(c.export_wh, 1), "Wh", None))
            out.append(
                (
                    "Power.Active.Export",
                    round(max(-draw, 0) * VOLTS * self.cfg.phases, 1),
                    "W",
                    None,
                )
            )
        return out

    def _meter_16(self, c: Connector) -> Payload:
        return {
            "timestamp": now_iso(),
            "sampledValue": [
                {"value": str(v), "measurand": m, "unit": u, **({"phase": p} if p else {})}
                for m, v, u, p in self._samples(c)
            ],
        }

    def _meter_2x(self, c: Connector) -> Payload:
        return {
            "timestamp": now_iso(),
            "sampledValue": [
                {
                    "value": v,
                    "measurand": m,
                    "unitOfMeasure": {"unit": u},
                    **({"phase": p} if p else {}),
                }
                for m, v, u, p in self._samples(c)
            ],
        }

    async def _tx_event(self, event: str, c: Connector, trigger: str, **extra: Any) -> None:
        info: Payload = {"transactionId": c.transaction}
        if event != "Ended":
            info["chargingState"] = "Charging" if self.draw_a(c.id) else "SuspendedEVSE"
        if extra.get("stopped_reason"):
            info["stoppedReason"] = extra["stopped_reason"]
        payload: Payload = {
            "eventType": event,
            "timestamp": now_iso(),
            "triggerReason": trigger,
            "seqNo": c.seq_no,
            "transactionInfo": info,
            "evse": {"id": c.id, "connectorId": 1},
            "meterValue": [self._meter_2x(c)],
        }
        if extra.get("id_token"):
            payload["idToken"] = extra["id_token"]
        c.seq_no += 1
        await self.call("TransactionEvent", payload)

    # -- what the CSMS asks: each returns (payload, follow-up coroutine or None) ---------------

    def _later(self, coro_fn: Callable[[], Any]) -> Callable[[], Any]:
        async def run() -> None:
            with contextlib.suppress(CallFailed):
                await coro_fn()

        return run

    def _on_RemoteStartTransaction(self, p: Payload) -> Any:
        connector = p.get("connectorId", 1)
        if connector not in self.connectors or self.connectors[connector].transaction:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, self._later(lambda: self.start(connector, p["idTag"]))

    def _on_RequestStartTransaction(self, p: Payload) -> Any:
        connector = p.get("evseId", 1)
        if connector not in self.connectors or self.connectors[connector].transaction:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, self._later(
            lambda: self.start(connector, p["idToken"]["idToken"], "RemoteStart")
        )

    def _find_tx(self, tx: Any) -> Connector | None:
        return next((c for c in self.connectors.values() if c.transaction == str(tx)), None)

    def _on_RemoteStopTransaction(self, p: Payload) -> Any:
        c = self._find_tx(p["transactionId"])
        if c is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, self._later(lambda: self.stop(c.id, "Remote"))

    def _on_RequestStopTransaction(self, p: Payload) -> Any:
        c = self._find_tx(p["transactionId"])
        if c is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, self._later(lambda: self.stop(c.id, "Remote"))

    def _on_Reset(self, p: Payload) -> Any:
        async def reboot() -> None:
            await asyncio.sleep(0.05)
            if self._ws is not None:
                await self._ws.close(1000, "reset")

        return {"status": "Accepted"}, reboot

    def _on_UnlockConnector(self, p: Payload) -> Any:
        return {"status": "Unlocked"}, None

    def _on_ChangeAvailability(self, p: Payload) -> Any:
        if self.v2:
            state = p["operationalStatus"]
            connector = (p.get("evse") or {}).get("id", 0)
        else:
            state, connector = p["type"], p["connectorId"]
        status = "Available" if state == "Operative" else "Unavailable"
        targets = list(self.connectors) if connector == 0 else [connector]

        async def apply() -> None:
            for t in targets:
                if t in self.connectors:
                    await self.set_status(t, status)

        return {"status": "Accepted"}, self._later(apply)

    def _on_TriggerMessage(self, p: Payload) -> Any:
        message = p["requestedMessage"]
        actions: dict[str, Callable[[], Any]] = {
            "Heartbeat": self.heartbeat,
            "BootNotification": self._boot,
            "StatusNotification": lambda: self.set_status(1, self.connectors[1].status),
            "MeterValues": lambda: self.send_meter(1),
        }
        if message not in actions:
            return {"status": "NotImplemented"}, None
        return {"status": "Accepted"}, self._later(actions[message])

    def _on_GetConfiguration(self, p: Payload) -> Any:
        keys = p.get("key") or list(self.config_keys)
        known = [
            {"key": k, "readonly": self.config_keys[k][1], "value": self.config_keys[k][0]}
            for k in keys
            if k in self.config_keys
        ]
        unknown = [k for k in keys if k not in self.config_keys]
        return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}, None

    def _on_ChangeConfiguration(self, p: Payload) -> Any:
        entry = self.config_keys.get(p["key"])
        if entry is None:
            return {"status": "NotSupported"}, None
        if entry[1]:
            return {"status": "Rejected"}, None
        self.config_keys[p["key"]] = (p["value"], False)
        return {"status": "Accepted"}, None

    def _variable(self, d: Payload) -> str | None:
        key = f"{d['component']['name']}.{d['variable']['name']}"
        mapping = {
            "OCPPCommCtrlr.HeartbeatInterval": "HeartbeatInterval",
            "SampledDataCtrlr.TxUpdatedInterval": "MeterValueSampleInterval",
        }
        return mapping.get(key)

    def _on_GetVariables(self, p: Payload) -> Any:
        results = []
        for d in p["getVariableData"]:
            key = self._variable(d)
            base = {"component": d["component"], "variable": d["variable"]}
            if key is None:
                results.append({"attributeStatus": "UnknownVariable", **base})
            else:
                results.append(
                    {
                        "attributeStatus": "Accepted",
                        "attributeValue": self.config_keys[key][0],
                        **base,
                    }
                )
        return {"getVariableResult": results}, None

    def _on_SetVariables(self, p: Payload) -> Any:
        results = []
        for d in p["setVariableData"]:
            key = self._variable(d)
            base = {"component": d["component"], "variable": d["variable"]}
            if key is None:
                results.append({"attributeStatus": "UnknownVariable", **base})
            else:
                self.config_keys[key] = (d["attributeValue"], False)
                results.append({"attributeStatus": "Accepted", **base})
        return {"setVariableResult": results}, None

    def _on_ClearCache(self, p: Payload) -> Any:
        return {"status": "Accepted"}, None

    def _on_SendLocalList(self, p: Payload) -> Any:
        self.local_list_version = p.get("listVersion", p.get("versionNumber", 0))
        return {"status": "Accepted"}, None

    def _on_GetLocalListVersion(self, p: Payload) -> Any:
        key = "versionNumber" if self.v2 else "listVersion"
        return {key: getattr(self, "local_list_version", 0)}, None

    def _on_UpdateFirmware(self, p: Payload) -> Any:
        async def progress() -> None:
            steps = ["Downloading", "Downloaded", "Installing", "Installed"]
            for s in steps:
                payload: Payload = {"status": s}
                if self.v2:
                    payload["requestId"] = p["requestId"]
                await asyncio.sleep(0.05)
                await self.call("FirmwareStatusNotification", payload)

        return {"status": "Accepted"} if self.v2 else {}, self._later(progress)

    def _on_GetDiagnostics(self, p: Payload) -> Any:
        async def upload() -> None:
            for s in ("Uploading", "Uploaded"):
                await self.call("DiagnosticsStatusNotification", {"status": s})

        return {"fileName": f"{self.cfg.id}-diagnostics.log"}, self._later(upload)

    def _on_GetLog(self, p: Payload) -> Any:
        async def upload() -> None:
            for s in ("Uploading", "Uploaded"):
                await self.call("LogStatusNotification", {"status": s, "requestId": p["requestId"]})

        return {"status": "Accepted", "filename": f"{self.cfg.id}.log"}, self._later(upload)

    def _on_SetChargingProfile(self, p: Payload) -> Any:
        if self.v2:
            profile, target = p["chargingProfile"], p["evseId"]
            schedule = profile["chargingSchedule"][0]
        else:
            profile, target = p["csChargingProfiles"], p["connectorId"]
            schedule = profile["chargingSchedule"]
        period = schedule["chargingSchedulePeriod"][0]
        limit = float(period.get("limit", self.cfg.max_current_a))
        if schedule["chargingRateUnit"] == "W":
            limit = limit / (VOLTS * self.cfg.phases)
        discharge = float(period.get("dischargeLimit", 0) or 0)
        for cid in list(self.connectors) if target == 0 else [target]:
            if cid in self.connectors:
                self._integrate(self.connectors[cid])
                self.connectors[cid].limit_a = max(limit, 0.0)
                if self.cfg.v2g:
                    self.connectors[cid].discharge_a = abs(min(limit, 0.0)) or abs(discharge)
        return {"status": "Accepted"}, None

    def _on_ClearChargingProfile(self, p: Payload) -> Any:
        for c in self.connectors.values():
            c.limit_a = None
            c.discharge_a = 0.0
        return {"status": "Accepted"}, None

    def _on_GetCompositeSchedule(self, p: Payload) -> Any:
        connector = p.get("evseId", p.get("connectorId", 0))
        limit = self.limit_a.get(int(connector or 0), self.cfg.max_current_a)
        schedule = {"startPeriod": 0, "limit": limit}
        if self.v2:
            return {
                "status": "Accepted",
                "schedule": {
                    "evseId": connector,
                    "duration": p["duration"],
                    "scheduleStart": now_iso(),
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [schedule],
                },
            }, None
        return {
            "status": "Accepted",
            "connectorId": connector,
            "scheduleStart": now_iso(),
            "chargingSchedule": {
                "duration": p["duration"],
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [schedule],
            },
        }, None

    def _on_DataTransfer(self, p: Payload) -> Any:
        return {"status": "UnknownVendorId"}, None
