"""What tinyhttp tells the terminal: the access log, and with --trace each socket's life."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from .message import Request

__all__ = ["AccessLog", "Exchange", "Ledger", "Trace", "Tracer", "escape"]

# Everything a client could use to forge a log line or drive a terminal: control
# characters (newline, ESC, and the C1 set such as 0x9b, a one-byte ESC [), the quote that
# ends a field, and the escape character itself. Request text arrives as latin-1, so
# every other byte above 0x7e is escaped too, and the log shows exactly what was sent.
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}


def escape(text: str) -> str:
    """`text` with control characters, quotes and backslashes written as `\\xHH`."""
    # Nearly every line needs nothing: these checks run in C, where translate() looks up
    # each character in a dict, a few microseconds for a browser's User-Agent.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.translate(_UNSAFE)


@dataclass(slots=True)
class Exchange:
    """One request and its answer, as the access log tells it once the answer is done."""

    peer: str
    request: Request | None  # None when no request could be read
    started: float  # time.monotonic() when the request's first byte arrived
    status: int = 0
    body_from: int = 0  # where the answer's body begins in the connection's stream of bytes
    ends_at: int = 0  # and where the answer ends

    @property
    def request_line(self) -> str:
        """The request line exactly as the client sent it, or "-"."""
        request = self.request
        if request is None:
            return "-"
        return f"{request.method} {request.target} HTTP/{request.http_version}"

    def header(self, name: str) -> str:
        return "" if self.request is None else self.request.headers.get(name, "")


class Ledger:
    """One connection's answers still going out, in order, and where each ends in its stream
    of bytes: each is handed back, for the log, once the kernel has taken its last byte."""

    __slots__ = ("_answers",)
    NEVER = 2**63  # where an answer that has not ended yet ends, for now

    def __init__(self) -> None:
        self._answers: list[Exchange] = []

    def __len__(self) -> int:
        return len(self._answers)

    def add(self, answer: Exchange, ends_at: int) -> None:
        """An answer queued up to `ends_at` (NEVER for one that goes on: see end())."""
        answer.ends_at = ends_at
        self._answers.append(answer)

    def end(self, ends_at: int) -> None:
        """The answer that went on (an event stream) ends at `ends_at` after all."""
        self._answers[-1].ends_at = ends_at

    def take(self, sent: int) -> list[Exchange]:
        """The answers that end within the first `sent` bytes (all of them, on closing)."""
        count = 0
        for answer in self._answers:
            if answer.ends_at > sent:
                break
            count += 1
        taken = self._answers[:count]
        del self._answers[:count]
        return taken


class AccessLog:
    """Writes `peer - - [time] "request" status bytes "referer" "agent" 1.2ms` lines.

    Lines are gathered and written once per turn of the server's loop: stderr is
    line-buffered when it is not a terminal, so a write() per line would be a system call
    per request.
    """

    def __init__(
        self, stream: TextIO | None = None, quiet: bool = False, as_json: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.as_json = as_json  # --log-format json: one object per line, for machines
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def answered(self, exchange: Exchange, body_bytes: int, now: float, cut: str = "") -> None:
        """Log one answer: the body bytes the kernel took, the time from the request's
        first byte to the answer's last, and why it was `cut` short, if it was."""
        if self.quiet:
            return
        ms = (now - exchange.started) * 1000
        if self.as_json:
            self._lines.append(_json_line(self._timestamp(), exchange, body_bytes, ms, cut))
            return
        self._lines.append(
            f'{exchange.peer} - - [{self._timestamp()}] "{escape(exchange.request_line)}" '
            f'{exchange.status} {body_bytes} "{escape(exchange.header("referer")) or "-"}" '
            f'"{escape(exchange.header("user-agent")) or "-"}" {ms:.2f}ms'
            f"{' cut:' + cut if cut else ''}\n"
        )

    def done(self, finished: list[Exchange]) -> None:
        """Log answers whose last byte the kernel has just taken."""
        for exchange in finished:
            self.answered(exchange, exchange.ends_at - exchange.body_from, time.monotonic())

    def cut(self, unsent: list[Exchange], sent: int, now: float, why: str) -> None:
        """Log answers a closed connection never finished: the body bytes of each the
        kernel took (`sent` counts every byte of the connection's stream) and why."""
        for exchange in unsent:
            body = min(max(sent - exchange.body_from, 0), exchange.ends_at - exchange.body_from)
            self.answered(exchange, body, now, why)

    def error(self, text: str) -> None:
        """Something went wrong on our side; shown even with --quiet."""
        self.line(text.rstrip("\n"))

    def line(self, text: str) -> None:
        """Any other line for the terminal (the trace, the last words on stopping)."""
        self._lines.append(text + "\n")

    def flush(self) -> None:
        """Write the lines gathered since the last flush, in one write()."""
        if self._lines:
            self.stream.write("".join(self._lines))
            self._lines.clear()
            self.stream.flush()

    def _timestamp(self) -> str:
        # strftime per request shows up in a profile; the stamp changes once a second.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._stamp


def _json_line(stamp: str, exchange: Exchange, body_bytes: int, ms: float, cut: str) -> str:
    record = {
        "time": stamp,
        "peer": exchange.peer,
        "request": exchange.request_line,
        "status": exchange.status,
        "bytes": body_bytes,
        "referer": exchange.header("referer"),
        "user_agent": exchange.header("user-agent"),
        "ms": round(ms, 2),
        "cut": cut or None,
    }
    # json.dumps escapes quotes, backslashes and control characters; ensure_ascii writes
    # every other byte a client chose as \u00XX, so no line can be forged or a terminal driven.
    return json.dumps(record) + "\n"


# --- --trace -------------------------------------------------------------------------------

# A recv() is shown up to this many bytes: enough for a request line and a few headers.
TRACE_BYTES = 160


class Trace:
    """--trace: one connection's socket-level life, each line tagged with its number."""

    def __init__(self, number: int, log: AccessLog) -> None:
        self.tag = f"[#{number}]"
        self.log = log

    def say(self, text: str) -> None:
        self.log.line(f"{self.tag} {text}")

    def received(self, data: bytes) -> None:
        if not data:
            self.say("recv -> 0 bytes: the client closed its side (EOF)")
            return
        shown = escape(data[:TRACE_BYTES].decode("latin-1")).replace("\\x0d\\x0a", "\\r\\n")
        more = f" ... (+{len(data) - TRACE_BYTES})" if len(data) > TRACE_BYTES else ""
        self.say(f"recv -> {len(data)} bytes: {shown}{more}")


class Tracer:
    """Numbers connections in the order they are accepted and hands each its Trace."""

    def __init__(self, log: AccessLog) -> None:
        self.log = log
        self.count = 0

    def accepted(self, peer: str) -> Trace:
        self.count += 1
        trace = Trace(self.count, self.log)
        trace.say(f"accept: a new connection from {peer}")
        return trace
