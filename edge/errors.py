"""The error tree; each boundary translates into it and the CLI maps it to an exit code."""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error edge raises on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid; `problems` lists every one as (key, message)."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        where = f" in {source}" if source else ""
        super().__init__(f"{len(problems)} configuration error(s){where}:\n{lines}")


class DeviceError(EdgeError):
    """A device (charger, meter) failed; the message names it and what to check."""

    def __init__(self, device_id: str, message: str) -> None:
        self.device_id = device_id
        super().__init__(f"{device_id}: {message}")


class StationNotConnected(DeviceError):
    """A command was addressed to a station that has no open connection."""

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id, "not connected")


class UnknownStation(DeviceError):
    """A station id that is neither configured nor ever seen."""

    def __init__(self, device_id: str) -> None:
        super().__init__(device_id, "unknown station")


class CommandTimeout(DeviceError):
    """A charger did not answer a CALL in time."""

    def __init__(self, device_id: str, action: str, timeout_s: float) -> None:
        self.action = action
        super().__init__(device_id, f"no answer to {action} within {timeout_s:g} s")


class CommandFailed(DeviceError):
    """A charger answered a CALL with a CALLERROR."""

    def __init__(self, device_id: str, action: str, code: str, description: str) -> None:
        self.action = action
        self.code = code
        self.description = description
        super().__init__(device_id, f"{action} failed: {code} {description}".rstrip())


class BadCommand(EdgeError):
    """A command's arguments are wrong; the message says which and what is allowed."""


class UplinkError(EdgeError):
    """The connection to the cloud failed."""
