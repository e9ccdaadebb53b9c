"""Stations, their protocol versions and connectors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OcppVersion(StrEnum):
    """The OCPP-J versions edge speaks; the value is the websocket subprotocol minus `ocpp`."""

    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"

    @property
    def subprotocol(self) -> str:
        return f"ocpp{self.value}"

    @property
    def is_v2(self) -> bool:
        return self is not OcppVersion.V16

    @classmethod
    def from_subprotocol(cls, name: str) -> OcppVersion:
        return cls(name.removeprefix("ocpp"))


@dataclass(frozen=True, slots=True)
class StationIdentity:
    """What a station says about itself in BootNotification."""

    vendor: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
