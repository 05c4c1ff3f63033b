"""What tinyhttp tells the terminal: the access log, and with --trace each socket's life."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

__all__ = ["AccessLog", "Trace", "Tracer", "escape"]

# Everything a client could use to forge a log line or drive a terminal: control
# characters (newline, ESC, and the C1 set such as 0x9b, a one-byte ESC [), the quote that
# ends a field, and the escape character itself. Request text arrives as latin-1, so
# every other byte above 0x7e is escaped too, and the log shows exactly what was sent.
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}


def escape(text: str) -> str:
    """`text` with control characters, quotes and backslashes written as `\\xHH`."""
    return text.translate(_UNSAFE)


class AccessLog:
    """Writes `peer - - [time] "request" status bytes "referer" "agent" 1.2ms` lines."""

    def __init__(
        self, stream: TextIO | None = None, quiet: bool = False, as_json: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.as_json = as_json  # --log-format json: one object per line, for machines
        self._second = -1
        self._stamp = ""

    def response(
        self,
        peer: str,
        request_line: str,
        status: int,
        size: int,
        referer: str,
        user_agent: str,
        seconds: float,
    ) -> None:
        """Log one answered request; `request_line` is exactly what the client sent."""
        if self.quiet:
            return
        if self.as_json:
            self._json(peer, request_line, status, size, referer, user_agent, seconds)
            return
        self.stream.write(
            f'{peer} - - [{self._timestamp()}] "{escape(request_line)}" {status} {size} '
            f'"{escape(referer) or "-"}" "{escape(user_agent) or "-"}" {seconds * 1000:.2f}ms\n'
        )

    def _json(
        self, peer: str, line: str, status: int, size: int, referer: str, agent: str, seconds: float
    ) -> None:
        record = {
            "time": self._timestamp(),
            "peer": peer,
            "request": line,
            "status": status,
            "bytes": size,
            "referer": referer,
            "user_agent": agent,
            "ms": round(seconds * 1000, 2),
        }
        # json.dumps escapes quotes, backslashes and control characters; ensure_ascii writes
        # every other byte a client chose as \u00XX, so no line can be forged or a terminal driven.
        self.stream.write(json.dumps(record) + "\n")

    def error(self, text: str) -> None:
        """Something went wrong on our side; shown even with --quiet."""
        self.stream.write(text.rstrip("\n") + "\n")

    def _timestamp(self) -> str:
        # strftime per request shows up in a profile; the stamp changes once a second.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._stamp


# --- --trace -------------------------------------------------------------------------------

# A recv() is shown up to this many bytes: enough for a request line and a few headers.
TRACE_BYTES = 160


class Trace:
    """--trace: one connection's socket-level life, each line tagged with its number."""

    def __init__(self, number: int, stream: TextIO) -> None:
        self.tag = f"[#{number}]"
        self.stream = stream

    def say(self, text: str) -> None:
        self.stream.write(f"{self.tag} {text}\n")

    def received(self, data: bytes) -> None:
        if not data:
            self.say("recv -> 0 bytes: the client closed its side (EOF)")
            return
        shown = escape(data[:TRACE_BYTES].decode("latin-1")).replace("\\x0d\\x0a", "\\r\\n")
        more = f" ... (+{len(data) - TRACE_BYTES})" if len(data) > TRACE_BYTES else ""
        self.say(f"recv -> {len(data)} bytes: {shown}{more}")


class Tracer:
    """Numbers connections in the order they are accepted and hands each its Trace."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0

    def accepted(self, peer: str) -> Trace:
        self.count += 1
        trace = Trace(self.count, self.stream)
        trace.say(f"accept: a new connection from {peer}")
        return trace
