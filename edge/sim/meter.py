"""A simulated Modbus meter: serves any profile's register map with values the caller sets.

Several meters (unit ids) can share one simulated bus, as on an RS-485 line. The server is
pymodbus's own, so what a poller meets here is a real Modbus TCP or RTU peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.modbus.profile import MeterProfile, Quantity
from edge.modbus.registers import encode
from edge.modbus.sunspec import END, MARKER

COMMON_MODEL = 1  # SunSpec common model (manufacturer, model, serial ...)
COMMON_LENGTH = 66


class SimMeter:
    """One meter's register image, built from a profile and a dict of quantity values."""

    def __init__(
        self, profile: MeterProfile, unit: int = 1, values: Mapping[str, float] | None = None
    ) -> None:
        self.profile = profile
        self.unit = unit
        self.values: dict[str, float] = dict(values or {})
        # None, or how the meter misbehaves: "exception" (answers Server Device Failure),
        # "silent" (never answers), "garbage" (answers bytes that are no Modbus frame)
        self.fault: str | None = None
        self.registers: dict[int, int] = {}
        self.requests = 0
        self._quantities, self._fixed = self._layout()
        self.update()

    def _layout(self) -> tuple[tuple[Quantity, ...], dict[int, int]]:
        p = self.profile
        if not p.discovers:
            return p.quantities, {}
        block = p.sunspec[0]
        base = p.base_addresses[0]
        common = base + 2
        start = common + 2 + COMMON_LENGTH
        fixed = {
            base: MARKER[0],
            base + 1: MARKER[1],
            common: COMMON_MODEL,
            common + 1: COMMON_LENGTH,
        }
        for i in range(COMMON_LENGTH):
            fixed[common + 2 + i] = 0
        fixed[start] = min(block.models)
        fixed[start + 1] = block.length
        for i in range(block.length):
            fixed[start + 2 + i] = 0
        fixed[start + 2 + block.length] = END
        fixed[start + 3 + block.length] = 0
        return block.at(start), fixed

    def set(self, **values: float) -> None:
        """Change quantities (e.g. `power=4200.0`) and re-encode the registers."""
        self.values.update(values)
        self.update()

    def update(self) -> None:
        """Encode every quantity the caller set into the register image."""
        regs = dict(self._fixed)
        scale_factors = _scale_factors(self._quantities, self.values)
        for q in self._quantities:
            value = self.values.get(q.name)
            if value is None:
                continue
            raw = value / q.factor
            if q.scale_factor_address is not None:
                sf = scale_factors[q.scale_factor_address]
                regs[q.scale_factor_address] = sf & 0xFFFF
                raw /= 10.0**sf
            for i, word in enumerate(encode(raw, q.type, q.word_order)):
                regs[q.address + i] = word
        self.registers = regs

    @property
    def span(self) -> tuple[int, int]:
        """First register and count of the image (what the server must answer for)."""
        addresses = set(self.registers) | {
            q.address + i for q in self._quantities for i in range(q.count)
        }
        first, last = min(addresses), max(addresses)
        return first, last - first + 1

    def device(self) -> SimDevice:
        """The pymodbus device serving this image (one shared block for FC 3 and 4)."""
        first, count = self.span
        return SimDevice(
            id=self.unit,
            simdata=[SimData(first, count=count, values=0, datatype=DataType.REGISTERS)],
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        self.requests += 1
        if self.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        for i in range(count):
            current[address - start_address + i] = self.registers.get(address + i, 0)
        return None


def _scale_factors(quantities: Sequence[Quantity], values: Mapping[str, float]) -> dict[int, int]:
    """For each SunSpec scale-factor register, the exponent that keeps its values in range."""
    needs: dict[int, list[tuple[float, str]]] = {}
    for q in quantities:
        if q.scale_factor_address is not None:
            value = values.get(q.name)
            if value is not None:
                needs.setdefault(q.scale_factor_address, []).append((value / q.factor, q.type))
    found: dict[int, int] = {}
    for address in {q.scale_factor_address for q in quantities if q.scale_factor_address}:
        found[address] = _exponent(needs.get(address, []))
    return found


def _exponent(pairs: list[tuple[float, str]]) -> int:
    limits = {"int16": 32767, "uint16": 65534, "int32": 2**31 - 1, "uint32": 2**32 - 2}
    for sf in range(-3, 6):
        if all(abs(v) / 10.0**sf <= limits.get(t, math.inf) for v, t in pairs):
            return sf
    return 5


class SimBus:
    """A pymodbus server for one or more simulated meters (one TCP port or serial line).

    A request for a unit id that is not on the bus gets no answer, as on a real line.
    """

    def __init__(self, meters: Sequence[SimMeter]) -> None:
        self.meters = list(meters)
        self._server: Any = None
        self._rtu = False
        self.port: int | None = None

    def _outgoing(self, sending: bool, packet: bytes) -> bytes:
        """pymodbus's packet hook: silence or garble answers per unit."""
        if not sending or not packet:
            return packet
        unit = packet[0] if self._rtu else packet[6] if len(packet) > 6 else -1
        meter = next((m for m in self.meters if m.unit == unit), None)
        if meter is None or meter.fault == "silent":
            return b""
        if meter.fault == "garbage":
            return bytes((b * 37 + 11) & 0xFF for b in packet)[: max(3, len(packet) // 2)]
        return packet

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0, *, rtu: bool = False) -> int:
        """Listen on TCP (Modbus TCP, or RTU framing over TCP); returns the port."""
        framer = FramerType.RTU if rtu else FramerType.SOCKET
        self._rtu = rtu
        devices = [m.device() for m in self.meters]
        server = ModbusTcpServer(
            devices, framer=framer, address=(host, port), trace_packet=self._outgoing
        )
        await server.serve_forever(background=True)
        self._server = server
        # the listening asyncio.Server, to learn the port picked for port 0
        sockets = getattr(server.transport, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def serve_serial(self, device: str, baudrate: int = 9600, parity: str = "N") -> None:
        """Answer on a serial device (e.g. one end of a pseudo-terminal pair)."""
        self._rtu = True
        devices = [m.device() for m in self.meters]
        server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=device,
            baudrate=baudrate,
            parity=parity,
            trace_packet=self._outgoing,
        )
        await server.serve_forever(background=True)
        self._server = server
        for _ in range(100):  # the serial port opens in the background
            if server.transport is not None:
                break
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop answering and close the port."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None
