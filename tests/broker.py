"""A real mosquitto on 127.0.0.1, started and stopped by the test, and a subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; `stop` and `start` again keep its port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class Subscriber:
    """Collects every message under a topic filter, as (topic, payload, retain)."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.messages: list[tuple[str, Any, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        # the broker may have been stopped under it: what it collected is what counts
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="test-cloud") as client:
            await client.subscribe(self.topic, qos=1)
            self._ready.set()
            async for m in client.messages:
                payload = m.payload
                text = payload.decode() if isinstance(payload, bytes | bytearray) else payload
                try:
                    value: Any = orjson.loads(text)
                except (orjson.JSONDecodeError, TypeError):
                    value = text
                self.messages.append((str(m.topic), value, bool(m.retain)))

    def events(self) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.messages if "/events/" in t and isinstance(p, dict)]


async def publish(port: int, topic: str, payload: dict[str, Any]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, orjson.dumps(payload), qos=1)


@contextlib.asynccontextmanager
async def running_broker(workdir: Path) -> AsyncIterator[Broker]:
    broker = Broker(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
