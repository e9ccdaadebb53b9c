"""A virtual RS-485 line: two pseudo-terminals joined by a thread, optionally paced.

Each end is a real tty device path (/dev/pts/N) that pyserial opens like a USB-RS485
adapter, so the serial code path of a poller is exercised without hardware. With a baud
rate set, bytes cross the link no faster than the wire would carry them (start bit, 8 data
bits, parity, stop bits per byte), which makes RTU timing measurable.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty


class SerialLink:
    """`a` and `b` are the device paths of the two ends."""

    def __init__(self, baudrate: int | None = None, bits_per_char: int = 10) -> None:
        self._masters: list[int] = []
        self._slaves: list[int] = []
        self.paths: list[str] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            self._masters.append(master)
            self._slaves.append(slave)
            self.paths.append(os.ttyname(slave))
        self.char_s = bits_per_char / baudrate if baudrate else 0.0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="serial-link", daemon=True)
        self._thread.start()

    @property
    def a(self) -> str:
        """One end (give it to the meter simulator)."""
        return self.paths[0]

    @property
    def b(self) -> str:
        """The other end (give it to the poller)."""
        return self.paths[1]

    def _pump(self) -> None:
        peer = {self._masters[0]: self._masters[1], self._masters[1]: self._masters[0]}
        # each direction is its own wire; a byte cannot leave before the previous one did
        free_at = dict.fromkeys(self._masters, 0.0)
        while not self._stop.is_set():
            ready, _, _ = select.select(self._masters, [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if self.char_s:
                    start = max(time.monotonic(), free_at[fd])
                    free_at[fd] = start + len(data) * self.char_s
                    delay = free_at[fd] - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.bytes += len(data)
                try:
                    os.write(peer[fd], data)
                except OSError:
                    continue

    def close(self) -> None:
        """Stop the pump and close both pseudo-terminals."""
        self._stop.set()
        self._thread.join(timeout=1)
        for fd in [*self._masters, *self._slaves]:
            with contextlib.suppress(OSError):
                os.close(fd)
