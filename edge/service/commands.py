"""Commands to one charger: resolve the operator's arguments, send, report the answer."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from edge.errors import BadCommand, StationNotConnected, UnknownStation
from edge.ocpp import commands
from edge.ocpp.server import OcppServer
from edge.service.load import LoadController
from edge.state.registry import ActiveSession, Registry


class StationCommands:
    """The one place where CLI/API commands become OCPP CALLs."""

    def __init__(
        self,
        server: OcppServer,
        registry: Registry,
        local_list: Callable[[], Awaitable[tuple[int, list[dict[str, Any]]]]] | None = None,
    ) -> None:
        self.server = server
        self.registry = registry
        self.local_list = local_list
        self._request_ids = itertools.count(1)
        # set by the daemon: with load balancing on, `limit` becomes a cap it applies
        self.load: LoadController | None = None

    async def run(self, station_id: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send `command` to a station and return its answer in the API shape."""
        if station_id not in self.registry.stations:
            raise UnknownStation(station_id)
        version = self.server.version_of(station_id)
        if version is None:
            raise StationNotConnected(station_id)
        if command not in commands.COMMANDS:
            raise BadCommand(
                f"unknown command {command!r}; allowed: {', '.join(commands.COMMANDS)}"
            )
        args = self._resolve(station_id, command, dict(args), version.is_v2)
        if command == "send_local_list" and "tags" not in args and self.local_list is not None:
            # The gateway's own list (config + `edge auth`), as a full update.
            args["version"], args["tags"] = await self.local_list()
            args["version"] = max(1, args["version"])
            args.setdefault("full", True)
        out = commands.build(version, command, args, request_id=next(self._request_ids))
        if command in ("limit", "clear_limit") and self.load is not None and self.load.enabled:
            return self._capped(station_id, command, args, out.action)
        response = await self.server.call(station_id, out.action, out.payload)
        accepted, status = commands.outcome(out.action, response)
        if command == "limit" and accepted:
            station = self.registry.station(station_id)
            station.limit_a = args.get("amps")
            station.limit_reason = "manual"
        return {
            "station": station_id,
            "command": command,
            "action": out.action,
            "accepted": accepted,
            "status": status,
            "response": response,
        }

    def _capped(
        self, station_id: str, command: str, args: dict[str, Any], action: str
    ) -> dict[str, Any]:
        """Under load balancing a limit written straight to the charger would be replaced
        at the next change, or worse, exceed the share: it becomes a cap instead."""
        assert self.load is not None
        amps = args.get("amps") if command == "limit" else None
        if command == "limit" and amps is None:
            raise BadCommand("amps: with load balancing on, give the limit in A (not watts)")
        connector = int(args.get("connector") or 0)
        self.load.set_cap("operator", station_id, connector, amps)
        status = "cap lifted" if amps is None else f"capped at {amps:g} A by load balancing"
        return {
            "station": station_id,
            "command": command,
            "action": action,
            "accepted": True,
            "status": status,
            "response": {"operator_limit_a": amps, "connector": connector},
        }

    def _resolve(
        self, station_id: str, command: str, args: dict[str, Any], v2: bool
    ) -> dict[str, Any]:
        if command == "stop" and "transaction_id" not in args:
            session = self._session_to_stop(station_id, args.pop("session_id", None))
            # 1.6: our session id is the charger's transactionId; 2.x: the charger's own id.
            args["transaction_id"] = session.transaction_id if v2 else session.id
        return args

    def _session_to_stop(self, station_id: str, session_id: Any) -> ActiveSession:
        active = self.registry.active_sessions(station_id)
        if session_id is not None:
            for s in active:
                if str(s.id) == str(session_id):
                    return s
            raise BadCommand(f"session {session_id} is not active on {station_id}")
        if not active:
            raise BadCommand(f"no active session on {station_id}")
        if len(active) > 1:
            ids = ", ".join(str(s.id) for s in active)
            raise BadCommand(f"{station_id} has several active sessions ({ids}); give --session")
        return active[0]
