"""Read plans: the fewest requests that fetch a register map, and decoding their answers.

Pure: a plan is computed once per meter and then run on every poll.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge.modbus.profile import Quantity
from edge.modbus.registers import FORMATS, raw_unsigned

SUNSSF_NOT_IMPLEMENTED = -32768  # SunSpec: a scale factor of 0x8000 means "not implemented"


@dataclass(frozen=True, slots=True)
class Span:
    """Registers someone needs: a quantity's value or a SunSpec scale factor."""

    function: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class Read:
    """One request: function code 3 or 4, first register, number of registers."""

    function: int
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register read."""
        return self.address + self.count


def spans(quantities: Iterable[Quantity]) -> list[Span]:
    """The registers a set of quantities needs, scale-factor registers included."""
    found: set[Span] = set()
    for q in quantities:
        found.add(Span(q.function, q.address, q.count))
        if q.scale_factor_address is not None:
            found.add(Span(q.function, q.scale_factor_address, 1))
    return sorted(found, key=lambda s: (s.function, s.address))


def plan_reads(needed: Sequence[Span], max_registers: int, max_gap: int | None) -> list[Read]:
    """Group spans into reads of at most `max_registers`, never bridging a hole wider than
    `max_gap` unmapped registers. Taking spans in address order and starting a new read only
    when the next one does not fit gives the fewest reads (the interval-cover greedy)."""
    reads: list[Read] = []
    start = end = -1
    function = -1
    for span in sorted(needed, key=lambda s: (s.function, s.address)):
        span_end = span.address + span.count
        fits = (
            span.function == function
            and max(end, span_end) - start <= max_registers
            and (max_gap is None or span.address - end <= max_gap)
        )
        if fits:
            end = max(end, span_end)
            continue
        if function != -1:
            reads.append(Read(function, start, end - start))
        function, start, end = span.function, span.address, span_end
    if function != -1:
        reads.append(Read(function, start, end - start))
    return reads


class Image:
    """The registers a poll returned, by (function, address)."""

    __slots__ = ("_regs",)

    def __init__(self) -> None:
        self._regs: dict[int, dict[int, int]] = {3: {}, 4: {}}

    def add(self, read: Read, words: Sequence[int]) -> None:
        """Store the answer to one read."""
        regs = self._regs[read.function]
        for i, word in enumerate(words):
            regs[read.address + i] = word

    def words(self, function: int, address: int, count: int) -> list[int] | None:
        """The registers of a span, or None if any was not read."""
        regs = self._regs[function]
        try:
            return [regs[address + i] for i in range(count)]
        except KeyError:
            return None


def decode_all(quantities: Iterable[Quantity], image: Image) -> dict[str, float]:
    """Every quantity with a value; not-available markers, NaN and infinities are left out."""
    values: dict[str, float] = {}
    for q in quantities:
        value = decode_one(q, image)
        if value is not None:
            values[q.name] = value
    return values


def decode_one(q: Quantity, image: Image) -> float | None:
    """One quantity in the project's unit, or None if it has no value."""
    words = image.words(q.function, q.address, q.count)
    if words is None:
        return None
    if q.not_available and raw_unsigned(words, q.word_order) in q.not_available:
        return None
    ordered = words if q.word_order == "big" else list(reversed(words))
    fmt = FORMATS[q.type][0]
    raw: float = struct.unpack(fmt, struct.pack(f">{len(ordered)}H", *ordered))[0]
    if not math.isfinite(raw):
        return None
    value = raw * q.factor
    if q.scale_factor_address is not None:
        sf_words = image.words(q.function, q.scale_factor_address, 1)
        if sf_words is None:
            return None
        sf = struct.unpack(">h", sf_words[0].to_bytes(2, "big"))[0]
        if sf == SUNSSF_NOT_IMPLEMENTED or not -10 <= sf <= 10:
            return None
        value *= 10.0**sf
    return _as_meant(value, raw, q.type)


def _as_meant(value: float, raw: float, data_type: str) -> float:
    """`value` to the digits its register carries: about 7 significant ones for a float32,
    as many as the integer has for an integer type. Binary scaling adds noise beyond them
    (231.8160400390625 V for a float32 231.816, 230.10000000000002 for 2301 x 0.1); status,
    the API and the cloud get the value the meter meant."""
    if data_type == "float32":
        digits = 7
    elif data_type == "float64":
        digits = 15
    else:
        digits = len(str(abs(int(raw))))
    return float(f"{value:.{digits}g}")
