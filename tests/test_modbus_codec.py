"""Register codecs, read plans, profile checking, SunSpec discovery, the meter board: pure."""

from __future__ import annotations

import itertools
import math
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.domain.site_meter import MeterHealth, Plausibility, SiteMeterSample, implausible
from edge.modbus.bus import BusSettings, ExceptionAnswer
from edge.modbus.plan import Image, Read, Span, decode_all, plan_reads, spans
from edge.modbus.profile import ProfileError, parse_profile
from edge.modbus.registers import decode, encode
from edge.modbus.sunspec import NotSunSpec, discover
from edge.state.meters import FROZEN_POLLS, MeterBoard

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

PROFILE = """
[profile]
name = "Test meter"
products = ["Test 1"]
sources = ["this test"]
phases = 3
max_current_a = 65

[defaults]
function = 4
type = "float32"

[quantities]
voltage_l1 = { address = 0, unit = "V" }
current_l1 = { address = 6, unit = "A" }
power = { address = 0x34, type = "int32", word_order = "little", scale = 0.1, unit = "W" }
import_wh = { address = 0x48, unit = "kWh" }
export_wh = { address = 0x4A, type = "uint32", scale = 0.01, unit = "kWh", not_available = [
    0xFFFFFFFF,
] }
frequency = { address = 0x200, function = 3, type = "uint16", scale = 0.01, unit = "Hz" }
"""


# -- registers -------------------------------------------------------------------------


def test_known_encodings() -> None:
    # 230.1 as IEEE 754 single precision is 0x43661999 (MSW first on the wire)
    assert encode(230.1, "float32") == [0x4366, 0x199A]
    assert encode(230.1, "float32", "little") == [0x199A, 0x4366]
    assert decode([0x4366, 0x199A], "float32") == pytest.approx(230.1, rel=1e-7)
    assert decode([0xFFFF], "int16") == -1 and decode([0xFFFF], "uint16") == 65535
    # Carlo Gavazzi style: INT32 least significant word first
    assert decode([0x0000, 0x8000], "int32", "little") == -(2**31)
    assert decode([0x0001, 0x0000], "int32", "little") == 1
    assert decode([0, 0, 0, 5], "uint64") == 5


@given(
    st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
    st.sampled_from(["big", "little"]),
    st.integers(),
)
def test_integers_round_trip(data_type: str, order: str, n: int) -> None:
    bits = {"16": 16, "32": 32, "64": 64}[data_type[-2:]]
    low, high = (
        (0, 2**bits - 1) if data_type.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    value = low + n % (high - low + 1)
    assert decode(encode(value, data_type, order), data_type, order) == value


@given(st.floats(allow_nan=False, width=32), st.sampled_from(["big", "little"]))
def test_floats_round_trip(value: float, order: str) -> None:
    assert decode(encode(value, "float32", order), "float32", order) == value
    assert decode(encode(value, "float64", order), "float64", order) == value


# -- read plans ------------------------------------------------------------------------


def test_plan_groups_into_fewest_reads_within_the_limits() -> None:
    needed = [Span(4, a, 2) for a in (0, 2, 4, 0x34, 0x48, 0x156)] + [Span(3, 0, 1)]
    assert plan_reads(needed, 125, None) == [
        Read(3, 0, 1),
        Read(4, 0, 0x4A),
        Read(4, 0x156, 2),
    ]
    # a device that refuses reads across undefined registers
    assert plan_reads(needed, 125, 0) == [
        Read(3, 0, 1),
        Read(4, 0, 6),
        Read(4, 0x34, 2),
        Read(4, 0x48, 2),
        Read(4, 0x156, 2),
    ]
    # a device that answers at most 4 registers at once
    assert plan_reads([Span(4, a, 2) for a in range(0, 12, 2)], 4, None) == [
        Read(4, 0, 4),
        Read(4, 4, 4),
        Read(4, 8, 4),
    ]


@given(
    st.lists(st.tuples(st.integers(0, 600), st.sampled_from([1, 2, 4])), min_size=1),
    st.integers(4, 125),
    st.one_of(st.none(), st.integers(0, 20)),
)
def test_a_plan_covers_every_span_and_keeps_the_limits(
    raw: list[tuple[int, int]], limit: int, gap: int | None
) -> None:
    needed = [Span(4, a, n) for a, n in raw]
    reads = plan_reads(needed, limit, gap)
    assert all(r.count <= limit for r in reads)
    for s in needed:
        assert any(r.address <= s.address and s.address + s.count <= r.end for r in reads)
    # the greedy is minimal: no two neighbouring reads could have been one
    for a, b in itertools.pairwise(reads):
        assert b.end - a.address > limit or (gap is not None and b.address - a.end > gap)


def test_decoding_applies_type_order_scale_unit_and_not_available() -> None:
    profile = parse_profile(PROFILE, "test")
    image = Image()
    regs = {
        0: encode(231.4, "float32"),
        6: encode(12.5, "float32"),
        0x34: encode(-42317, "int32", "little"),  # -4231.7 W
        0x48: encode(1234.5, "float32"),  # kWh
        0x4A: [0xFFFF, 0xFFFF],  # not available
    }
    block = [0] * 0x4C
    for address, words in regs.items():
        block[address : address + len(words)] = words
    image.add(Read(4, 0, 0x4C), block)
    image.add(Read(3, 0x200, 1), [5002])
    values = decode_all(profile.quantities, image)
    # Exactly the meter's figures: no float32 or binary-scaling digits beyond them.
    assert values["voltage_l1"] == 231.4
    assert values["power"] == -4231.7
    assert values["import_wh"] == 1234500.0
    assert values["frequency"] == 50.02
    assert "export_wh" not in values


def test_nan_is_no_value() -> None:
    profile = parse_profile(PROFILE, "test")
    image = Image()
    image.add(Read(4, 0, 2), list(struct.unpack(">2H", struct.pack(">f", math.nan))))
    assert "voltage_l1" not in decode_all(profile.quantities, image)


# -- profile checking ------------------------------------------------------------------


def test_every_mistake_in_a_profile_is_listed_with_its_key() -> None:
    bad = """
[profile]
name = "Broken"
products = []
sources = ["x"]
phases = 2
max_current_a = 10
max_registers = 200

[defaults]
function = 4

[quantities]
voltage_l1 = { address = 0, type = "float32", unit = "kV" }
current_l1 = { address = 1, type = "float32", unit = "A" }
power = { address = 4, type = "float16", unit = "W" }
watts = { address = 8, type = "float32", unit = "W" }
frequency = { address = 10, unit = "Hz" }
"""
    with pytest.raises(ProfileError) as caught:
        parse_profile(bad, "broken", "broken.toml")
    keys = {key for key, _ in caught.value.problems}
    assert {"profile.products", "profile.phases", "profile.max_registers"} <= keys
    text = str(caught.value)
    assert "broken.toml" in text


def test_quantity_problems_are_listed_together() -> None:
    header = PROFILE.split("[quantities]")[0]
    bad = (
        header
        + """[quantities]
voltage_l1 = { address = 0, unit = "V" }
current_l1 = { address = 1, unit = "A" }
power = { address = 4, type = "float16", unit = "W" }
watts = { address = 8, unit = "W" }
frequency = { address = 10, unit = "kHz" }
"""
    )
    with pytest.raises(ProfileError) as caught:
        parse_profile(bad, "broken")
    problems = dict(caught.value.problems)
    assert "'kHz' is not a unit of frequency" in problems["quantities.frequency.unit"]
    assert "also voltage_l1" in problems["quantities.current_l1.address"]
    assert "quantities.power.type" in problems
    assert "unknown quantity" in problems["quantities.watts"]


def test_not_toml_is_one_clear_problem() -> None:
    with pytest.raises(ProfileError, match="not valid TOML"):
        parse_profile("[profile\nname=", "x")


# -- SunSpec discovery -----------------------------------------------------------------

SUNSPEC = """
[profile]
name = "SunSpec"
products = ["any"]
sources = ["sunspec/models"]
phases = 3
max_current_a = 100
discovery = "sunspec"
base_addresses = [40000, 0]

[[blocks]]
models = [203]
length = 105
[blocks.quantities]
power = { offset = 18, type = "int16", scale_factor = 22, unit = "W", not_available = [0x8000] }
import_wh = { offset = 46, type = "uint32", scale_factor = 54, unit = "Wh", not_available = [0] }

[[blocks]]
models = [213]
length = 124
[blocks.quantities]
power = { offset = 28, type = "float32", unit = "W" }
"""


def _device(base: int, model: int, length: int) -> dict[int, int]:
    regs = {base: 0x5375, base + 1: 0x6E53, base + 2: 1, base + 3: 66}
    start = base + 4 + 66
    regs.update({start: model, start + 1: length, start + 2 + length: 0xFFFF})
    return regs


async def test_sunspec_discovery_walks_to_the_meter_model() -> None:
    profile = parse_profile(SUNSPEC, "sunspec")
    regs = _device(0, 203, 105)

    async def read(function: int, address: int, count: int) -> list[int]:
        if address >= 40000:
            raise ExceptionAnswer(2, function, address, count)  # no map at 40000
        return [regs.get(address + i, 0) for i in range(count)]

    found = await discover(profile, read)
    assert found.model == 203 and found.start == 70
    power = next(q for q in found.quantities if q.name == "power")
    assert power.address == 70 + 18 and power.scale_factor_address == 70 + 22
    image = Image()
    for r in plan_reads(spans(found.quantities), 125, None):
        image.add(r, [regs.get(r.address + i, 0) for i in range(r.count)])
    regs[88], regs[92] = 4210, 0xFFFF  # 4210 x 10^-1 W
    image = Image()
    for r in plan_reads(spans(found.quantities), 125, None):
        image.add(r, [regs.get(r.address + i, 0) for i in range(r.count)])
    assert decode_all(found.quantities, image) == {"power": pytest.approx(421.0)}


async def test_a_device_without_a_known_model_is_named() -> None:
    profile = parse_profile(SUNSPEC, "sunspec")
    regs = _device(40000, 101, 50)  # an inverter, no meter

    async def read(function: int, address: int, count: int) -> list[int]:
        return [regs.get(address + i, 0) for i in range(count)]

    with pytest.raises(NotSunSpec, match=r"models \[1, 101\]"):
        await discover(profile, read)


# -- the board: ok, stale, frozen, failing ----------------------------------------------


def _sample(at: datetime, power: float, meter: str = "grid") -> SiteMeterSample:
    return SiteMeterSample(meter, at, {"power": power, "current_l1": power / 230})


def test_a_reading_goes_stale_and_a_failure_shows() -> None:
    board = MeterBoard([("grid", "grid", "p")], stale_after_s=10)
    assert board.health("grid", T0) is MeterHealth.STARTING
    board.sample(_sample(T0, 1000))
    assert board.health("grid", T0 + timedelta(seconds=5)) is MeterHealth.OK
    assert board.trusted("grid", T0 + timedelta(seconds=5)) is not None
    assert board.health("grid", T0 + timedelta(seconds=11)) is MeterHealth.STALE
    assert board.trusted("grid", T0 + timedelta(seconds=11)) is None
    board.failed("grid", "no answer", T0 + timedelta(seconds=2))
    assert board.health("grid", T0 + timedelta(seconds=3)) is MeterHealth.FAILING
    # a fresh reading is still usable for the control layer until it is stale
    assert board.trusted("grid", T0 + timedelta(seconds=3)) is not None
    board.sample(_sample(T0 + timedelta(seconds=4), 1100))
    status = board.to_json("grid", T0 + timedelta(seconds=4))
    assert status["status"] == "ok" and status["last_error"] == "no answer"


def test_a_reading_from_before_the_clock_went_back_is_not_fresh() -> None:
    # NTP sets back a controller clock that ran ahead by an hour: the last reading now
    # seems to come from the future. Taken for fresh, a dead meter's last reading would
    # steer the load balancer for that hour; it is stale until the next poll.
    board = MeterBoard([("grid", "grid", "p")], stale_after_s=10)
    board.sample(_sample(T0 + timedelta(hours=1), 1000))
    assert board.health("grid", T0) is MeterHealth.STALE
    assert board.trusted("grid", T0) is None
    board.sample(_sample(T0 + timedelta(seconds=1), 1000))
    assert board.trusted("grid", T0 + timedelta(seconds=1)) is not None


def test_identical_readings_while_ev_current_moves_are_frozen() -> None:
    board = MeterBoard([("grid", "grid", "p")], stale_after_s=10)
    for i in range(FROZEN_POLLS + 1):
        board.sample(_sample(T0 + timedelta(seconds=i), 5000), ev_current_a=16.0)
    at = T0 + timedelta(seconds=FROZEN_POLLS)
    assert board.health("grid", at) is MeterHealth.OK, "a steady site is not a frozen meter"
    board.sample(_sample(at + timedelta(seconds=1), 5000), ev_current_a=32.0)
    assert board.health("grid", at + timedelta(seconds=1)) is MeterHealth.FROZEN
    assert board.trusted("grid", at + timedelta(seconds=1)) is None
    board.sample(_sample(at + timedelta(seconds=2), 9000), ev_current_a=32.0)
    assert board.health("grid", at + timedelta(seconds=2)) is MeterHealth.OK


def test_identical_readings_for_minutes_are_frozen_without_evs() -> None:
    board = MeterBoard([("grid", "grid", "p")], stale_after_s=10)
    for i in range(200):
        board.sample(_sample(T0 + timedelta(seconds=i), 5000))
    assert board.health("grid", T0 + timedelta(seconds=199)) is MeterHealth.FROZEN


# -- plausibility ----------------------------------------------------------------------


def test_implausible_values_are_each_named() -> None:
    check = Plausibility(role="pv", phases=3, max_current_a=65, previous_import_wh=2000.0)
    values = {
        "voltage_l1": 231.0,
        "voltage_l2": 120.0,
        "voltage_l3": 231.0,
        "frequency": 60.0,
        "current_l1": 80.0,
        "import_wh": 1500.0,
        "power": 3000.0,
    }
    found = " | ".join(implausible(values, check))
    assert "voltage_l2 120.0 V" in found and "voltage_l1" not in found
    assert "frequency" not in found
    assert "current_l1 80.0 A" in found
    assert "went backwards" in found
    assert "PV meter should show export" in found
    good = dict(values, voltage_l2=229.0, current_l1=20.0, import_wh=2100.0, power=-3000.0)
    assert implausible(good, check) == []


def test_rtu_frame_gap_follows_the_line_speed() -> None:
    # Modbus over Serial Line §2.5.1.1: 3.5 characters, 1.75 ms above 19200 baud
    assert BusSettings("rtu", device="x", baudrate=9600).frame_gap_s == pytest.approx(
        3.5 * 10 / 9600
    )
    assert BusSettings("rtu", device="x", baudrate=9600, parity="E").frame_gap_s == pytest.approx(
        3.5 * 11 / 9600
    )
    assert BusSettings("rtu", device="x", baudrate=38400).frame_gap_s == pytest.approx(0.00175)
    assert BusSettings("tcp", host="h").frame_gap_s == 0


def test_profile_from_a_path(tmp_path: Path) -> None:
    from edge.modbus.profile import load_profile

    path = tmp_path / "my-meter.toml"
    path.write_text(PROFILE, encoding="utf-8")
    assert load_profile(str(path)).stem == "my-meter"
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile("no-such-meter")
