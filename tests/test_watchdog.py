"""systemd's watchdog: `edge run` tells systemd it is alive (WATCHDOG=1 on
$NOTIFY_SOCKET) while its store commits, and stops telling it while the store is stuck,
so that systemd restarts a daemon that no longer answers chargers."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, write_config


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on for sd_notify(3) datagrams."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def received(sock: socket.socket, seconds: float, until: str | None = None) -> list[str]:
    """The datagrams that arrive within `seconds`, or until `until` has come twice."""
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until is None or got.count(until) < 2):
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def test_the_watchdog_is_fed_while_the_store_commits_and_not_while_it_is_stuck(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    db = tmp_path / "edge.sqlite"
    _, api = write_config(tmp_path / "edge.toml", db)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    proc = DaemonProcess(tmp_path / "edge.toml", api, env=env)
    try:
        proc.wait_ready()
        first = received(notify_socket, 5.0, until="WATCHDOG=1")
        assert "READY=1" in first
        assert first.count("WATCHDOG=1") >= 2, first  # every half WatchdogSec

        # Another process holds the database: the daemon's writer cannot commit.
        holder = sqlite3.connect(db, isolation_level=None, timeout=10)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            received(notify_socket, 0.6)  # a ping already on its way
            stuck = received(notify_socket, 2.0)
            assert "WATCHDOG=1" not in stuck, stuck
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        again = received(notify_socket, 10.0, until="WATCHDOG=1")
        assert "WATCHDOG=1" in again, again
    finally:
        assert proc.stop() == 0
    out = proc.proc.stdout.read().decode() if proc.proc.stdout else ""
    assert "daemon.watchdog.unhealthy" in out, out


def test_no_watchdog_without_systemd_asking(tmp_path: Path, notify_socket: socket.socket) -> None:
    _, api = write_config(tmp_path / "edge.toml", tmp_path / "edge.sqlite")
    proc = DaemonProcess(
        tmp_path / "edge.toml", api, env={"NOTIFY_SOCKET": str(tmp_path / "notify")}
    )
    try:
        proc.wait_ready()
        got = received(notify_socket, 1.5)
        assert "READY=1" in got and "WATCHDOG=1" not in got, got
    finally:
        assert proc.stop() == 0
