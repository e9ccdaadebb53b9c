"""`edge run` as a real child process, the way systemd starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, db: Path, extra: str = "") -> tuple[int, int]:
    """A config for a child daemon on free loopback ports; returns (ocpp, api) ports."""
    ocpp, api = free_port(), free_port()
    path.write_text(f"""
[site]
id = "proc-site"
[ocpp]
host = "127.0.0.1"
port = {ocpp}
ping_interval_s = 0
call_timeout_s = 2
[api]
listen = "127.0.0.1:{api}"
[store]
path = "{db}"
reserve_mb = 1
[log]
level = "warning"
format = "json"
[[stations]]
id = "CP1"
[[stations]]
id = "CP2"
{extra}
""")
    return ocpp, api


class DaemonProcess:
    def __init__(self, config: Path, api_port: int, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.api = f"http://127.0.0.1:{api_port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"edge run exited {self.proc.returncode}: {out}")
            try:
                with urllib.request.urlopen(f"{self.api}/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("daemon not ready")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
