"""websockets' server connection with a direct path for whole text messages.

Per message, websockets' asyncio connection puts the frame in its assembler, wakes the
task waiting in `recv()`, and sends through an async context that awaits flow control.
For OCPP-J, where every message is one small text frame, that machinery cost about 17 of
the 47 µs the websocket layer takes per message round trip on the bench machine. Here:

- a complete text frame (FIN set, no fragmented message in progress, nothing waiting in
  the assembler) goes straight to `on_text`, from the protocol callback that parsed it;
- a reply goes straight to the transport while the connection is open and the transport
  is not asking us to wait; otherwise through websockets' own `send()`.

Everything else (fragmented messages, binary frames, control frames, the handshake,
closing, pings, compression) stays with websockets. Order is kept: a message that went
the slow way holds back the direct path until the reader has taken it.

Received bytes also reach websockets' parser a slice at a time, and not at all while
the OCPP connection holds its input (too many of the charger's CALLs waiting): see
`INPUT_SLICE`.

This relies on members of websockets' connection that are not its documented API
(`process_event`, `send_data`, `data_received`, `protocol`, `paused`, `send_in_progress`);
`DIRECT` is False when the installed version lacks one of them, and edge then uses
`recv()`/`send()` only. pyproject.toml pins websockets to the major version this was
written against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Opcode
from websockets.protocol import State

_NEEDED = ("process_event", "send_data", "data_received")
_NEEDED_STATE = ("protocol", "paused", "send_in_progress", "recv_messages")

# Bytes handed to websockets' parser at a time. Under permessage-deflate a frame of a
# few dozen bytes can inflate to `max_frame_bytes`, and websockets parses and inflates
# every frame of what it is given before the first reaches us: a 256 KiB socket read
# of such frames held about 250 MB. Fed a slice at a time, with a stop while the
# charger's inbox is full, a connection holds at most a slice's worth of inflated
# frames beyond that (about 13 frames of 64 KB) and its raw bytes.
INPUT_SLICE = 1024


class OcppWebSocket(ServerConnection):
    """A ServerConnection whose whole text messages can bypass recv()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set by the OCPP connection while it serves; None: every frame goes to recv().
        self.on_text: Callable[[str], None] | None = None
        self._fragmented = False  # a message's first frame had no FIN
        self._queued = 0  # whole messages in the assembler that recv() has not returned
        self._backlog = bytearray()  # received, not yet given to the parser
        self._input_held = False

    def data_received(self, data: bytes) -> None:
        if not self._backlog and not self._input_held and len(data) <= INPUT_SLICE:
            super().data_received(data)  # the usual case: one small message
            return
        self._backlog += data
        self._feed()

    def hold_input(self, held: bool) -> None:
        """Stop (or restart) parsing what has been received; the OCPP connection holds
        input while its inbox is full, and also pauses the transport."""
        self._input_held = held
        if not held:
            self._feed()

    def _feed(self) -> None:
        while self._backlog and not self._input_held and not self.transport.is_closing():
            piece = bytes(self._backlog[:INPUT_SLICE])
            del self._backlog[:INPUT_SLICE]
            super().data_received(piece)

    def process_event(self, event: Any) -> None:
        opcode = getattr(event, "opcode", None)  # None: the handshake's HTTP request
        if opcode is Opcode.TEXT and event.fin and self._direct_ok():
            try:
                text = event.data.decode()
            except UnicodeDecodeError:
                # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection.
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                self.send_data()
                return
            assert self.on_text is not None
            try:
                self.on_text(text)
            except Exception:  # a bug must not escape into the transport's callback
                self.logger.error("message handler failed", exc_info=True)
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "internal error")
                self.send_data()
            return
        if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragmented = not event.fin
            if event.fin:
                self._queued += 1
        super().process_event(event)

    def _direct_ok(self) -> bool:
        return self.on_text is not None and not self._fragmented and not self._queued

    def took_one(self) -> None:
        """The reader has taken a message from recv()."""
        if self._queued:
            self._queued -= 1

    def send_now(self, text: str) -> bool:
        """Write one text message now; False if it must go through `send()` instead
        (not open, a fragmented send in progress, or the transport asked us to wait)."""
        if (
            self.protocol.state is not State.OPEN
            or self.send_in_progress is not None
            or self.paused
        ):
            return False
        self.protocol.send_text(text.encode())
        self.send_data()
        return True


DIRECT = all(hasattr(ServerConnection, name) for name in _NEEDED)


def direct_capable(ws: object) -> bool:
    """Whether `ws` is an OcppWebSocket of a websockets version that has what it needs."""
    return DIRECT and isinstance(ws, OcppWebSocket) and _has_state(ws)


def _has_state(ws: object) -> bool:
    return all(hasattr(ws, name) for name in _NEEDED_STATE)
