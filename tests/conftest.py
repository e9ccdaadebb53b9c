"""Shared fixtures: a real daemon on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import hypothesis  # noqa: F401 - see below
import pytest

from edge.config import Config, parse_config
from edge.service.daemon import Daemon

# hypothesis' pytest plugin imports the package lazily in the terminal summary; CPython
# 3.11.7 can then fail with "AST constructor recursion depth mismatch" (fixed upstream in
# 3.11.8). Importing it here, before any test runs, avoids that late import.

BASE_CONFIG = """
[site]
id = "test-site"

[ocpp]
host = "127.0.0.1"
port = {port}
heartbeat_interval = 120
call_timeout_s = {call_timeout}
ping_interval_s = 0
{ocpp}

[api]
listen = "127.0.0.1:0"

[store]
path = "{db}"
reserve_mb = 1

[[stations]]
id = "CP16"

[[stations]]
id = "CP201"

[[stations]]
id = "CP21"
"""


@dataclass
class RunningSite:
    daemon: Daemon
    config: Config
    config_path: Path  # the config as a file, for CLI commands that take --config

    @property
    def url(self) -> str:
        assert self.daemon.server is not None
        return f"ws://127.0.0.1:{self.daemon.server.port}{self.config.ocpp.path}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.daemon.api_port}"

    @property
    def db(self) -> Path:
        return Path(self.config.store.path)


StartSite = Callable[..., Awaitable[RunningSite]]


def site_config(tmp_path: Path, extra: str = "", call_timeout: float = 2.0, ocpp: str = "") -> str:
    """The base test config: `ocpp` lines go into [ocpp], `extra` TOML is appended."""
    db = tmp_path / "edge.sqlite"
    return BASE_CONFIG.format(port=0, db=db, call_timeout=call_timeout, ocpp=ocpp) + extra


@pytest.fixture
async def start_site(tmp_path: Path) -> AsyncIterator[StartSite]:
    """Start daemons with the base config (+ extra TOML); all are stopped at teardown."""
    running: list[Daemon] = []

    async def start(
        extra: str = "", *, call_timeout: float = 2.0, ocpp: str = "", text: str | None = None
    ) -> RunningSite:
        text = text or site_config(tmp_path, extra, call_timeout, ocpp)
        config = parse_config(text)
        path = tmp_path / (f"edge-{len(running) + 1}.toml" if running else "edge.toml")
        path.write_text(text, encoding="utf-8")
        daemon = Daemon(config)
        await daemon.start()
        running.append(daemon)
        return RunningSite(daemon, config, path)

    yield start
    for daemon in running:
        await daemon.stop()


@pytest.fixture
async def site(start_site: StartSite) -> RunningSite:
    """One running daemon with stations CP16, CP201, CP21 and security profile 0."""
    return await start_site()
