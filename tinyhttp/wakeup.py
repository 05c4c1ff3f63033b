"""Waking the loop: a signal, or stop() from another thread, ends a select() at once.

select() may sleep with no timeout at all. Under PEP 475, a signal handler that only sets a
flag does not end that sleep: the system call is resumed as if nothing happened. So the
loop also watches one end of a socket pair, and every wake-up writes a byte to the other end:
`signal.set_wakeup_fd` does it in C for a signal, stop() after setting its flag.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from types import FrameType

__all__ = ["Wakeup"]


class Wakeup:
    """The socket pair, the stop flag, and the signal handlers that set it."""

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        self.stop_requested = False
        self._signals: tuple[int, ...] = ()

    def stop(self) -> None:
        """Ask the loop to stop; safe from another thread or a signal handler."""
        self.stop_requested = True  # first the flag, then the wake-up that makes it seen
        with contextlib.suppress(OSError):  # full or closed: the loop is waking anyway
            self._writer.send(b"\0")

    def catch(self, signals: tuple[int, ...]) -> None:
        """Turn these signals into stop() (call from the main thread)."""
        self._signals = signals
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            os._exit(130)  # a second Ctrl-C: the user does not want to wait for the drain
        # set_wakeup_fd's byte may already have been read by the time this handler runs;
        # stop() writes one after setting the flag, so the loop always sees it.
        self.stop()

    def drain(self, mask: int) -> None:
        """The selector's callback: read the wake-up bytes (the loop checks the flag)."""
        with contextlib.suppress(BlockingIOError):
            while self.reader.recv(4096):
                pass

    def close(self) -> None:
        if self._signals:
            signal.set_wakeup_fd(-1)
        self.reader.close()
        self._writer.close()
