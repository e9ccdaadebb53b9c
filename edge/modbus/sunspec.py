"""SunSpec discovery: find a meter model block from the SunSpec header.

SunSpec devices put the marker "SunS" (0x5375 0x6E53) at one of a few base addresses
(40000, 0 or 50000), followed by model blocks, each an ID register, a length register L
and L registers of points, until an ID of 0xFFFF (SunSpec Information Model Reference,
"Device Modbus Map"; the same walk as the SunSpec Alliance's pysunspec2 client).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge.modbus.bus import ExceptionAnswer
from edge.modbus.profile import MeterProfile, Quantity

MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MAX_MODELS = 64  # a device lists a handful; stop walking a map that never ends

ReadFn = Callable[[int, int, int], Awaitable[list[int]]]


class NotSunSpec(Exception):
    """No SunSpec marker, or no model the profile knows."""


@dataclass(frozen=True, slots=True)
class Found:
    """The model the profile will read, and where its ID register is."""

    model: int
    start: int
    quantities: tuple[Quantity, ...]


async def discover(profile: MeterProfile, read: ReadFn) -> Found:
    """Walk the device's SunSpec map with `read(function, address, count)`.

    `read` raises for an exception response (e.g. Illegal Data Address at a base address
    the device does not have); that base address is then skipped.
    """
    fn = profile.function
    seen: list[int] = []
    for base in profile.base_addresses:
        try:
            marker = await read(fn, base, 2)
        except ExceptionAnswer:  # e.g. Illegal Data Address: no map at this base
            continue
        if tuple(marker) != MARKER:
            continue
        address = base + 2
        for _ in range(MAX_MODELS):
            model, length = await read(fn, address, 2)
            if model == END:
                break
            seen.append(model)
            for block in profile.sunspec:
                if model in block.models:
                    return Found(model, address, block.at(address))
            address += 2 + length
        known = sorted({m for b in profile.sunspec for m in b.models})
        raise NotSunSpec(f"SunSpec map at {base} has models {seen}, none of {known}")
    raise NotSunSpec(f"no SunSpec marker at {', '.join(map(str, profile.base_addresses))}")
