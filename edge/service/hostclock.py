"""Whether this controller's own clock is synchronized.

Edge stamps every session with it and gives it to the chargers (BootNotification and
Heartbeat answers carry currentTime). A Raspberry Pi has no battery-backed clock: after
a power cut it starts from the time it last saved until NTP reaches a server, which at
a site without internet may be never. The kernel knows whether its clock is
synchronized (adjtimex(2) returns TIME_ERROR when it is not); `timedatectl` reads the
same flag, but needs systemd and D-Bus.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronized
# struct timex is 208 bytes on 64-bit Linux (less on 32-bit); a larger zeroed buffer
# leaves `modes` 0, which only reads.
_TIMEX_BYTES = 512


def synchronized() -> bool | None:
    """True or False as the kernel says; None where it cannot be asked (not Linux)."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    state = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


@functools.cache
def _adjtimex() -> Any:
    """The C library's adjtimex, looked up once (each heartbeat answer may ask); None
    where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
