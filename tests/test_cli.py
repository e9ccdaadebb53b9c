"""The `edge` command as a site manager types it, against a real `edge run` process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_process import DaemonProcess, write_config
from tests.peer import BOOT_16, RawCharger


def edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Without COLUMNS, as a table piped into grep or a file is printed.
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env=env,
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Path, int]]:
    d = tmp_path_factory.mktemp("cli")
    config = d / "edge.toml"
    ocpp, api = write_config(config, d / "edge.sqlite", '\n[[stations]]\nid = "SIM01"\n')
    proc = DaemonProcess(config, api)
    proc.wait_ready()
    yield proc, config, ocpp
    assert proc.stop() == 0, "SIGTERM must stop the daemon cleanly"


def test_status_and_stations_read_the_daemon(daemon: tuple[DaemonProcess, Path, int]) -> None:
    _, config, _ = daemon
    out = edge("status", "--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["site"] == "proc-site"
    assert status["stations"] == {"known": 3, "connected": 0, "refused": []}
    assert set(status) >= {"version", "uptime_s", "sessions", "load", "uplink", "v2g"}
    table = edge("stations", "--config", str(config))
    assert table.returncode == 0 and "CP1" in table.stdout and "CP2" in table.stdout
    sessions = edge("sessions", "--config", str(config), "--active", "--json")
    assert sessions.returncode == 0 and json.loads(sessions.stdout) == []


def test_command_outcomes_have_distinct_exit_codes(
    daemon: tuple[DaemonProcess, Path, int],
) -> None:
    _, config, ocpp = daemon
    c = str(config)
    not_connected = edge("station", "CP1", "reset", "--config", c)
    assert not_connected.returncode == 3 and "not connected" in not_connected.stderr
    assert len(not_connected.stderr.strip().splitlines()) == 1
    unknown = edge("station", "NOPE", "reset", "--config", c)
    assert unknown.returncode == 6

    async def with_charger() -> dict[str, subprocess.CompletedProcess[str]]:
        charger = await RawCharger.connect(f"ws://127.0.0.1:{ocpp}/ocpp", "CP1")
        await charger.call("BootNotification", BOOT_16)
        results = {}

        async def answer(status: str | None) -> None:
            frame = await charger.next_call()
            if status is not None:
                await charger.answer(frame, {"status": status})

        for name, status in (("accepted", "Accepted"), ("rejected", "Rejected"), ("timeout", None)):
            task = asyncio.create_task(answer(status))
            results[name] = await asyncio.to_thread(
                edge, "station", "CP1", "reset", "--hard", "--config", c
            )
            await task
        await charger.close()
        return results

    results = asyncio.run(with_charger())
    assert results["accepted"].returncode == 0
    assert "Reset -> Accepted" in results["accepted"].stdout
    assert results["rejected"].returncode == 4
    assert "Reset not accepted (Rejected)" in results["rejected"].stderr
    assert results["timeout"].returncode == 5 and "no answer" in results["timeout"].stderr
    bad = edge("station", "CP1", "availability", "1", "sideways", "--config", c)
    assert bad.returncode in (2, 3)


def test_schedule_and_local_list_version_print_the_chargers_answer(
    daemon: tuple[DaemonProcess, Path, int],
) -> None:
    _, config, ocpp = daemon
    c = str(config)
    schedule = {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": "2026-12-04T10:00:00Z",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 13.0}],
        },
    }

    async def with_charger() -> tuple[list[list[Any]], list[subprocess.CompletedProcess[str]]]:
        charger = await RawCharger.connect(f"ws://127.0.0.1:{ocpp}/ocpp", "CP2")
        await charger.call("BootNotification", BOOT_16)
        calls, outs = [], []
        for args, answer in (
            (("schedule", "--connector", "1", "--duration", "600"), schedule),
            (("local-list-version",), {"listVersion": 7}),
        ):
            run = asyncio.create_task(
                asyncio.to_thread(edge, "station", "CP2", *args, "--config", c)
            )
            frame = await charger.next_call()
            await charger.answer(frame, answer)
            calls.append(frame)
            outs.append(await run)
        await charger.close()
        return calls, outs

    calls, (sched, version) = asyncio.run(with_charger())
    assert calls[0][2:] == ["GetCompositeSchedule", {"connectorId": 1, "duration": 600}]
    assert sched.returncode == 0, sched.stderr
    assert "GetCompositeSchedule -> Accepted" in sched.stdout
    assert '"limit": 13.0' in sched.stdout
    assert calls[1][2:] == ["GetLocalListVersion", {}]
    assert version.returncode == 0, version.stderr
    assert '"listVersion": 7' in version.stdout


def test_daemon_unreachable_is_69(tmp_path: Path) -> None:
    out = edge("status", "--api", "http://127.0.0.1:9")
    assert out.returncode == 69 and "no edge daemon" in out.stderr


def test_installer_flow_init_then_check(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "edge.toml"
    assert edge("init", str(target)).returncode == 0
    assert edge("init", str(target)).returncode == 1  # no silent overwrite
    ok = edge("check-config", str(target))
    assert ok.returncode == 0 and "ok" in ok.stdout
    target.write_text(
        target.read_text()
        .replace("port = 9000", 'port = "nine"')
        .replace('strategy = "fair"', 'strategy = "random"')
    )
    bad = edge("check-config", str(target))
    assert bad.returncode == 78
    assert "ocpp.port" in bad.stderr and "load.strategy" in bad.stderr
    run = edge("run", "--config", str(target))
    assert run.returncode == 78, "systemd must not restart-loop on a bad config"


def test_a_database_that_cannot_be_opened_is_named_without_a_traceback(tmp_path: Path) -> None:
    target = tmp_path / "edge.toml"
    not_a_file = tmp_path / "a-directory"
    not_a_file.mkdir()
    target.write_text(
        f'[store]\npath = "{not_a_file}"\n[api]\nlisten = "127.0.0.1:0"\n[ocpp]\nport = 0\n'
    )
    run = edge("run", "--config", str(target))
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert f"{not_a_file}: cannot open the database" in out and "Traceback" not in out, out


def test_auth_list_management(daemon: tuple[DaemonProcess, Path, int]) -> None:
    _, config, _ = daemon
    c = str(config)
    assert edge("auth", "add", "CARD1", "--status", "Blocked", "--config", c).returncode == 0
    listed = json.loads(edge("auth", "list", "--json", "--config", c).stdout)
    assert [(t["id_tag"], t["status"]) for t in listed] == [("CARD1", "Blocked")]
    assert edge("auth", "add", "CARD2", "--status", "Maybe", "--config", c).returncode == 2
    assert edge("auth", "remove", "CARD1", "--config", c).returncode == 0
    assert edge("auth", "remove", "CARD1", "--config", c).returncode == 1


def test_interactive_simulator_drives_a_session(daemon: tuple[DaemonProcess, Path, int]) -> None:
    _, config, ocpp = daemon
    c = str(config)
    url = f"ws://127.0.0.1:{ocpp}/ocpp"
    out = edge(
        "simulate",
        "--stations",
        "1",
        "--ocpp",
        "2.0.1",
        "--url",
        url,
        "--interactive",
        "--config",
        c,
        stdin="start 1 CARD7\nmeter 123456\nlist\nstop\nquit\n",
    )
    assert out.returncode == 0, out.stderr
    assert "SIM01: session started" in out.stdout and "SIM01: session stopped" in out.stdout
    sessions = json.loads(edge("sessions", "--station", "SIM01", "--json", "--config", c).stdout)
    assert sessions[0]["id_tag"] == "CARD7" and sessions[0]["status"] == "completed"
    # Piped, the table keeps whole cells: a manager's `edge sessions | grep CARD7` finds it.
    table = edge("sessions", "--station", "SIM01", "--config", c)
    assert table.returncode == 0, table.stderr
    assert "CARD7" in table.stdout and "completed" in table.stdout, table.stdout
    assert "…" not in table.stdout, table.stdout


def test_doctor_names_what_is_missing(daemon: tuple[DaemonProcess, Path, int]) -> None:
    _, config, _ = daemon
    out = edge("doctor", "--config", str(config))
    assert out.returncode == 1
    assert "✓ daemon ready" in out.stdout
    assert "✗ station CP2: not connected; point it at ws://" in out.stdout


def test_doctor_says_when_load_balancing_has_no_meter(tmp_path: Path) -> None:
    from edge.config import parse_config
    from edge.service.doctor import load_checks

    blind = parse_config("[load]\ngrid_limit_a = 40\n")
    ((ok, line),) = load_checks(blind)
    assert not ok and "no meter with role 'grid' or 'building'" in line
    assert "fail-safe 6 A" in line
    metered = parse_config(
        '[load]\ngrid_limit_a = 40\n[[meters]]\nid = "main"\nrole = "grid"\n'
        'profile = "eastron-sdm630"\nhost = "192.0.2.1"\n'
    )
    ((ok, line),) = load_checks(metered)
    assert ok and "measured by main" in line
    assert list(load_checks(parse_config(""))) == []
