"""Register codecs: Modbus words <-> numbers, no I/O.

A Modbus register is 16 bits, sent big-endian (Modbus Application Protocol v1.1b3 §4.2).
Wider values span consecutive registers; devices disagree on which word comes first, so
the word order is part of each quantity's description.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

DataType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
WordOrder = Literal["big", "little"]

# struct format (big-endian) and width in registers of each type
FORMATS: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
    "float64": (">d", 4),
}


def width(data_type: str) -> int:
    """Registers one value of the type occupies."""
    return FORMATS[data_type][1]


def _bytes(words: Sequence[int], word_order: str) -> bytes:
    ordered = words if word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def raw_unsigned(words: Sequence[int], word_order: str = "big") -> int:
    """The words as one unsigned integer, most significant first after ordering."""
    return int.from_bytes(_bytes(words, word_order), "big")


def decode(words: Sequence[int], data_type: str, word_order: str = "big") -> float:
    """One value from exactly `width(data_type)` registers."""
    fmt, n = FORMATS[data_type]
    if len(words) != n:
        raise ValueError(f"{data_type} needs {n} registers, got {len(words)}")
    value: float = struct.unpack(fmt, _bytes(words, word_order))[0]
    return value


def encode(value: float, data_type: str, word_order: str = "big") -> list[int]:
    """The registers a device sends for `value` (the inverse of `decode`)."""
    fmt, n = FORMATS[data_type]
    number: float = value if data_type.startswith("float") else round(value)
    data = struct.pack(fmt, number)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * n, 2)]
    return words if word_order == "big" else list(reversed(words))


def finite(value: float) -> bool:
    """False for NaN and infinities, which some meters send for 'no value'."""
    return math.isfinite(value)
