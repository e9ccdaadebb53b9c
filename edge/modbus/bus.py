"""Buses: one Modbus client per TCP endpoint or serial line, one request at a time.

Every meter on an RS-485 line (or behind one TCP gateway) shares its bus. The bus is the
one place that enforces the rules of the wire (STYLE.md practice 12): requests are
serialized, an RTU request waits the inter-frame silence after the previous answer, each
request has its own timeout, and a lost connection is re-opened with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge.errors import EdgeError

# pymodbus logs every timeout and reconnect attempt at ERROR; the poller reports outages once.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
# Modbus over Serial Line v1.02 §2.5.1.1: 3.5 character times of silence between frames,
# fixed at 1.75 ms above 19200 baud.
FAST_GAP_S = 0.00175

EXCEPTION_NAMES = {
    1: "Illegal Function",
    2: "Illegal Data Address",
    3: "Illegal Data Value",
    4: "Server Device Failure",
    5: "Acknowledge",
    6: "Server Device Busy",
    10: "Gateway Path Unavailable",
    11: "Gateway Target Device Failed to Respond",
}


class BusError(EdgeError):
    """A request on a bus failed; the message says how."""


class NoConnection(BusError):
    """The TCP endpoint or serial device cannot be opened (now)."""


class NoAnswer(BusError):
    """The device did not answer within the request timeout, or answered garbage."""


class ExceptionAnswer(BusError):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int, function: int, address: int, count: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"exception {code} ({name}) for function {function} at {address} x{count}")


@dataclass(frozen=True, slots=True)
class BusSettings:
    """How to reach a bus; meters with equal settings share one."""

    transport: str  # tcp | rtu | rtu-over-tcp
    host: str | None = None
    port: int = 502
    device: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 1.0

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the physical bus."""
        if self.transport == "rtu":
            return ("rtu", self.device)
        return (self.transport, self.host, self.port)

    @property
    def name(self) -> str:
        """For logs: tcp://host:port, rtu:///dev/ttyUSB0."""
        if self.transport == "rtu":
            return f"rtu://{self.device}"
        return f"{self.transport}://{self.host}:{self.port}"

    @property
    def char_time_s(self) -> float:
        """One character on the wire: start bit, 8 data bits, parity, stop bits."""
        bits = 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    @property
    def frame_gap_s(self) -> float:
        """The silence an RTU line needs between frames (0 for Modbus TCP)."""
        if self.transport == "tcp":
            return 0.0
        if self.transport == "rtu-over-tcp" or self.baudrate > 19200:
            return FAST_GAP_S
        return 3.5 * self.char_time_s


class Bus:
    """One client, one request at a time, reopened with capped backoff after a failure."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._last_io = 0.0
        self._retry_at = 0.0
        self._backoff = BACKOFF_START_S
        self._silent = 0  # consecutive timeouts on a TCP connection
        self.requests = 0
        self.failures = 0

    def _new_client(self) -> Any:
        s = self.settings
        common: dict[str, Any] = {"timeout": s.timeout_s, "retries": 0, "reconnect_delay": 0}
        if s.transport == "rtu":
            return AsyncModbusSerialClient(
                s.device or "",
                framer=FramerType.RTU,
                baudrate=s.baudrate,
                parity=s.parity,
                stopbits=s.stopbits,
                bytesize=8,
                **common,
            )
        framer = FramerType.RTU if s.transport == "rtu-over-tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(s.host or "", port=s.port, framer=framer, **common)

    async def _connected(self) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        loop = asyncio.get_running_loop()
        wait = self._retry_at - loop.time()
        if wait > 0:
            raise NoConnection(f"{self.settings.name}: down, next attempt in {wait:.0f} s")
        self._drop()
        client = self._new_client()
        try:
            async with asyncio.timeout(self.settings.timeout_s + 2):  # not wait_for (3.11)
                ok = await client.connect()
        except (OSError, TimeoutError, ModbusException) as exc:
            ok = False
            reason = str(exc) or type(exc).__name__
        else:
            reason = "connection refused or device missing"
        if not ok:
            client.close()
            self._retry_at = loop.time() + self._backoff * random.uniform(0.8, 1.2)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            raise NoConnection(f"{self.settings.name}: cannot connect ({reason})")
        self._client = client
        self._backoff = BACKOFF_START_S
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, function: int, address: int, count: int, unit: int) -> list[int]:
        """Read `count` registers with function 3 or 4 from unit id `unit`."""
        async with self._lock:
            client = await self._connected()
            loop = asyncio.get_running_loop()
            gap = self._last_io + self.settings.frame_gap_s - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            self.requests += 1
            try:
                return await self._request(client, function, address, count, unit)
            except BusError:
                self.failures += 1
                raise
            finally:
                self._last_io = loop.time()

    async def _request(
        self, client: Any, function: int, address: int, count: int, unit: int
    ) -> list[int]:
        call = client.read_holding_registers if function == 3 else client.read_input_registers
        try:
            response = await call(address, count=count, device_id=unit)
        except ConnectionException as exc:
            self._drop()
            raise NoConnection(f"{self.settings.name}: connection lost ({exc})") from None
        except ModbusException as exc:
            self._timed_out()
            raise NoAnswer(f"{self.settings.name} unit {unit}: no valid answer ({exc})") from None
        self._silent = 0
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise ExceptionAnswer(code, function, address, count)
        registers: list[int] = list(response.registers)
        if len(registers) != count:
            raise NoAnswer(
                f"{self.settings.name} unit {unit}: asked {count} registers, got {len(registers)}"
            )
        return registers

    def _timed_out(self) -> None:
        # On a serial line a silent unit says nothing about the line; on TCP, several
        # silent requests in a row mean a half-open connection: reopen it.
        self._silent += 1
        if self.settings.transport != "rtu" and self._silent >= 3:
            self._silent = 0
            self._drop()

    async def close(self) -> None:
        """Close the client; a later read reopens it."""
        async with self._lock:
            self._drop()
