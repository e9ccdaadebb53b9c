"""Meter profiles: `hardware/meters/*.toml` register maps, loaded and checked.

A profile is data (DESIGN.md §1): per quantity a function code, 0-based address, data
type, word order, scale, sign and unit. Loading checks all of it in one pass and reports
every problem with its key, so `edge profiles check FILE` can guide someone writing one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import hardware
from edge.domain.site_meter import QUANTITY_UNITS
from edge.errors import EdgeError
from edge.modbus.registers import DataType, WordOrder, width

MAX_READ = 125  # Modbus Application Protocol v1.1b3 §6.3/§6.4: at most 125 registers per read

# Units a register may have, as a factor to the project's unit of that quantity.
UNIT_FACTORS: Mapping[str, Mapping[str, float]] = {
    "V": {"V": 1.0},
    "A": {"A": 1.0},
    "W": {"W": 1.0, "kW": 1000.0},
    "var": {"var": 1.0, "kvar": 1000.0},
    "VA": {"VA": 1.0, "kVA": 1000.0},
    "1": {"1": 1.0},
    "Hz": {"Hz": 1.0},
    "Wh": {"Wh": 1.0, "kWh": 1000.0},
}


class ProfileError(EdgeError):
    """A profile file is missing or wrong; `problems` lists every mistake as (key, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


# -- the file, as pydantic reads it --------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Info(_Strict):
    name: Annotated[str, Field(min_length=1)]
    products: Annotated[list[str], Field(min_length=1)]
    sources: Annotated[list[str], Field(min_length=1)]
    phases: Literal[1, 3]
    max_current_a: Annotated[float, Field(gt=0)]
    max_registers: Annotated[int, Field(ge=1, le=MAX_READ)] = MAX_READ
    max_gap: Annotated[int, Field(ge=0)] | None = None
    discovery: Literal["fixed", "sunspec"] = "fixed"
    base_addresses: list[Annotated[int, Field(ge=0, le=65535)]] = [40000, 0, 50000]
    function: Literal[3, 4] = 3


class _Register(_Strict):
    function: Literal[3, 4]
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType
    word_order: WordOrder = "big"
    scale: float = 1.0
    sign: Literal[1, -1] = 1
    unit: str
    not_available: list[Annotated[int, Field(ge=0)]] = []


class _Point(_Strict):
    offset: Annotated[int, Field(ge=2, le=65535)]
    type: DataType
    word_order: WordOrder = "big"
    scale_factor: Annotated[int, Field(ge=2, le=65535)] | None = None
    scale: float = 1.0
    sign: Literal[1, -1] = 1
    unit: str
    not_available: list[Annotated[int, Field(ge=0)]] = []


class _Block(_Strict):
    models: Annotated[list[Annotated[int, Field(ge=1, le=65534)]], Field(min_length=1)]
    length: Annotated[int, Field(ge=1, le=65535)]
    quantities: dict[str, _Point]


class _File(_Strict):
    profile: _Info
    defaults: dict[str, Any] = {}
    quantities: dict[str, dict[str, Any]] = {}
    blocks: list[_Block] = []


# -- what the rest of edge uses ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quantity:
    """Where one quantity lives and how to turn its registers into the project's unit."""

    name: str
    function: int
    address: int
    type: str
    word_order: str
    factor: float  # scale x sign x unit conversion
    not_available: frozenset[int] = frozenset()
    scale_factor_address: int | None = None  # SunSpec: value x 10^(int16 at this address)

    @property
    def count(self) -> int:
        """Registers the value spans."""
        return width(self.type)


@dataclass(frozen=True, slots=True)
class SunSpecBlock:
    """The quantities of a family of SunSpec models, by offset from the model's ID register."""

    models: frozenset[int]
    length: int
    quantities: tuple[Quantity, ...]  # address = offset; placed by `at`

    def at(self, start: int) -> tuple[Quantity, ...]:
        """The quantities of a model block that begins (its ID register) at `start`."""
        return tuple(
            Quantity(
                q.name,
                q.function,
                start + q.address,
                q.type,
                q.word_order,
                q.factor,
                q.not_available,
                None if q.scale_factor_address is None else start + q.scale_factor_address,
            )
            for q in self.quantities
        )


@dataclass(frozen=True, slots=True)
class MeterProfile:
    """A loaded, checked register map."""

    stem: str
    name: str
    products: tuple[str, ...]
    sources: tuple[str, ...]
    phases: int
    max_current_a: float
    max_registers: int
    max_gap: int | None
    quantities: tuple[Quantity, ...]  # empty for SunSpec until discovered
    sunspec: tuple[SunSpecBlock, ...] = ()
    base_addresses: tuple[int, ...] = ()
    function: int = 3

    @property
    def discovers(self) -> bool:
        """True when the map is found at run time from the SunSpec header."""
        return bool(self.sunspec)

    def names(self) -> list[str]:
        """Every quantity the profile can yield."""
        if self.sunspec:
            return sorted({q.name for b in self.sunspec for q in b.quantities})
        return [q.name for q in self.quantities]


def parse_profile(text: str, stem: str, source: str = "<string>") -> MeterProfile:
    """Parse a profile's TOML; raises ProfileError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, [("(file)", f"not valid TOML: {exc}")]) from None
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(source, list(_pydantic_problems(exc))) from None
    problems: list[tuple[str, str]] = []
    profile = _build(raw, stem, problems)
    if problems:
        raise ProfileError(source, problems)
    return profile


def _pydantic_problems(exc: ValidationError) -> Iterator[tuple[str, str]]:
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(file)"
        yield key, err["msg"]


def _build(raw: _File, stem: str, problems: list[tuple[str, str]]) -> MeterProfile:
    info = raw.profile
    quantities: tuple[Quantity, ...] = ()
    blocks: tuple[SunSpecBlock, ...] = ()
    if info.discovery == "sunspec":
        if raw.quantities or raw.defaults:
            problems.append(("quantities", "a SunSpec profile maps quantities in [[blocks]]"))
        if not raw.blocks:
            problems.append(("blocks", "a SunSpec profile needs at least one [[blocks]]"))
        blocks = tuple(_block(b, i, info.function, problems) for i, b in enumerate(raw.blocks))
    else:
        if raw.blocks:
            problems.append(("blocks", 'only a profile with discovery = "sunspec" has blocks'))
        if not raw.quantities:
            problems.append(("quantities", "at least one quantity is needed"))
        quantities = tuple(_fixed(raw, problems))
        problems.extend(_overlaps(quantities))
    return MeterProfile(
        stem=stem,
        name=info.name,
        products=tuple(info.products),
        sources=tuple(info.sources),
        phases=info.phases,
        max_current_a=info.max_current_a,
        max_registers=info.max_registers,
        max_gap=info.max_gap,
        quantities=quantities,
        sunspec=blocks,
        base_addresses=tuple(info.base_addresses),
        function=info.function,
    )


def _fixed(raw: _File, problems: list[tuple[str, str]]) -> Iterator[Quantity]:
    for name, fields in raw.quantities.items():
        key = f"quantities.{name}"
        try:
            reg = _Register.model_validate({**raw.defaults, **fields})
        except ValidationError as exc:
            for sub, msg in _pydantic_problems(exc):
                problems.append((f"{key}.{sub}", msg))
            continue
        factor = _factor(name, reg.unit, key, problems)
        if reg.scale == 0:
            problems.append((f"{key}.scale", "must not be 0"))
        if reg.address + width(reg.type) > 65536:
            problems.append((f"{key}.address", "the value runs past register 65535"))
        if factor is None:
            continue
        yield Quantity(
            name,
            reg.function,
            reg.address,
            reg.type,
            reg.word_order,
            reg.scale * reg.sign * factor,
            frozenset(reg.not_available),
        )


def _block(b: _Block, index: int, function: int, problems: list[tuple[str, str]]) -> SunSpecBlock:
    found: list[Quantity] = []
    for name, p in b.quantities.items():
        key = f"blocks[{index}].quantities.{name}"
        factor = _factor(name, p.unit, key, problems)
        if p.offset + width(p.type) > b.length + 2:
            problems.append((f"{key}.offset", f"runs past the model's length ({b.length})"))
        if p.scale_factor is not None and p.scale_factor >= b.length + 2:
            problems.append((f"{key}.scale_factor", f"is past the model's length ({b.length})"))
        if factor is not None:
            found.append(
                Quantity(
                    name,
                    function,
                    p.offset,
                    p.type,
                    p.word_order,
                    p.scale * p.sign * factor,
                    frozenset(p.not_available),
                    p.scale_factor,
                )
            )
    return SunSpecBlock(frozenset(b.models), b.length, tuple(found))


def _factor(name: str, unit: str, key: str, problems: list[tuple[str, str]]) -> float | None:
    canonical = QUANTITY_UNITS.get(name)
    if canonical is None:
        allowed = ", ".join(QUANTITY_UNITS)
        problems.append((key, f"unknown quantity; one of {allowed}"))
        return None
    units = UNIT_FACTORS[canonical]
    if unit not in units:
        problems.append((f"{key}.unit", f"{unit!r} is not a unit of {name}; one of {list(units)}"))
        return None
    return units[unit]


def _overlaps(quantities: tuple[Quantity, ...]) -> Iterator[tuple[str, str]]:
    taken: dict[tuple[int, int], str] = {}
    for q in quantities:
        for reg in range(q.address, q.address + q.count):
            other = taken.setdefault((q.function, reg), q.name)
            if other != q.name:
                yield (
                    f"quantities.{q.name}.address",
                    f"register {reg} (function {q.function}) is also {other}",
                )
                break


# -- where profiles are found ----------------------------------------------------------------


def shipped() -> dict[str, Path]:
    """Every shipped meter profile by stem."""
    return hardware.shipped("meters")


def load_profile(name: str) -> MeterProfile:
    """A profile by stem (`eastron-sdm630`) or by path to a `.toml` file."""
    path = hardware.locate("meters", name)
    if path is None:
        hint = "`edge profiles list` shows the shipped ones; or give a path to a .toml file"
        raise ProfileError(name, [("profile", f"no such profile {name!r}; {hint}")])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    return parse_profile(text, path.stem, str(path))
