"""One client: recv() chunks into h11, each request to static.respond(), replies to the outbox."""

from __future__ import annotations

import enum
import socket
import time
import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import cast

import h11

from . import __version__
from .cache import FileCache
from .config import Config
from .httpdate import DateClock
from .log import AccessLog, Trace
from .outbox import FileSlice, Outbox
from .static import Reply, Request, error_reply, respond

__all__ = ["Connection", "Heads", "Phase"]

SERVER = f"tinyhttp/{__version__}"
# h11 sends `HTTP/1.1 200 ` unless told the reason phrase.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
RECV_BYTES = 64 * 1024
# Stop taking new requests (and reading) while this much answer waits to go out:
# a client that pipelines without reading must not make us buffer without bound.
HIGH_WATER = 256 * 1024
# The states in which we may still send a response (h11 docs, "error handling").
_CAN_ANSWER = (h11.IDLE, h11.SEND_RESPONSE)


class Phase(enum.Enum):
    """Where a connection is in its life, beyond what h11 tracks."""

    OPEN = "open"  # serving requests
    CLOSING = "closing"  # send what is queued, then close
    LINGERING = "lingering"  # our side is shut; drain the client's leftovers (RFC 9112 §9.6)
    CLOSED = "closed"  # the server may forget this connection and close its socket


class Heads:
    """The h11.Response events of this second's answers, each built once and reused.

    Building a Response validates every header field, and the same small file answered a
    thousand times a second has the same head, Date included: keep it until the Date changes.
    """

    # Distinct heads kept within one second, at most: enough for a site's hot files.
    LIMIT = 1024

    def __init__(self, clock: DateClock) -> None:
        self.clock = clock
        self._date = ""
        self._made: dict[tuple[int, tuple[tuple[str, str], ...], bool], h11.Response] = {}

    def response(
        self, status: int, headers: tuple[tuple[str, str], ...], close: bool
    ) -> h11.Response:
        """The Response for a reply: Date, Server and nosniff first, then its own headers."""
        date = self.clock.now()
        if date != self._date or len(self._made) >= self.LIMIT:
            self._date = date
            self._made.clear()
        key = (status, headers, close)
        response = self._made.get(key)
        if response is None:
            response = self._made[key] = self._build(status, headers, close, date)
        return response

    @staticmethod
    def _build(
        status: int, headers: tuple[tuple[str, str], ...], close: bool, date: str
    ) -> h11.Response:
        fields = [("Date", date), ("Server", SERVER), ("X-Content-Type-Options", "nosniff")]
        fields.extend(headers)
        if close:
            fields.append(("Connection", "close"))
        return h11.Response(status_code=status, headers=fields, reason=REASONS.get(status, b""))


class Connection:
    """The state of one client, driven by the server's readable, writable and timeout events."""

    # Slots, not a __dict__: 10,000 idle connections should cost little memory each.
    __slots__ = (
        "body_bytes",
        "cache",
        "config",
        "draining",
        "h11",
        "head_started",
        "heads",
        "held_back",
        "idle_since",
        "last_recv",
        "last_send",
        "linger_left",
        "linger_until",
        "log",
        "opened",
        "outbox",
        "peer",
        "phase",
        "request",
        "sock",
        "trace",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        config: Config,
        log: AccessLog,
        heads: Heads,
        now: float,
        cache: FileCache | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.config = config
        self.log = log
        self.heads = heads
        self.cache = cache
        self.trace = trace  # None unless --trace: each hook costs one test of None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_head_bytes)
        self.outbox = Outbox(use_sendfile=config.use_sendfile, trace=trace)
        self.phase = Phase.OPEN
        self.opened = now
        self.idle_since = now  # waiting for a request since
        self.head_started: float | None = None  # first byte of the request head
        self.last_recv = now
        self.last_send = now
        self.linger_until = 0.0
        self.linger_left = 0
        self.body_bytes = 0
        self.request: Request | None = None  # the one being answered, for a 500's log line
        self.held_back = False  # requests wait in h11 because the outbox is full
        self.draining = False  # the server is stopping: answer what is in flight, then close

    # --- what the server asks ------------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        if self.phase is Phase.LINGERING:
            return True
        return (
            self.phase is Phase.OPEN
            and not self._must_close()
            and (self.outbox.pending < HIGH_WATER)
        )

    @property
    def wants_write(self) -> bool:
        return bool(self.outbox) and self.phase in (Phase.OPEN, Phase.CLOSING)

    @property
    def deadline(self) -> float:
        """When this connection has waited too long, whatever it is waiting for."""
        if self.phase is Phase.LINGERING:
            return self.linger_until
        if self.outbox:
            return self.last_send + self.config.send_timeout
        if self.h11.their_state is h11.IDLE:
            if self.head_started is not None:  # absolute: trickling bytes buys nothing
                return self.head_started + self.config.head_timeout
            first = self.idle_since == self.opened
            return self.idle_since + (
                self.config.head_timeout if first else self.config.idle_timeout
            )
        # Reading a body: a byte now and then must not hold the connection forever either.
        started = self.head_started if self.head_started is not None else self.idle_since
        return min(self.last_recv + self.config.idle_timeout, started + self.config.head_timeout)

    @property
    def is_idle(self) -> bool:
        """Between requests, nothing half-received and nothing to send: cheap to close."""
        return (
            self.phase is Phase.OPEN
            and not self.outbox
            and (self.h11.their_state is h11.IDLE and not self._head_begun())
        )

    @property
    def is_reading_head(self) -> bool:
        """A request head has begun to arrive and is not complete yet."""
        return self.h11.their_state is h11.IDLE and self._head_begun()

    def _head_begun(self) -> bool:
        # Bytes of a pipelined request may wait in h11's buffer before any recv() of ours
        # marks head_started; asked rarely, so the buffer copy is affordable here.
        return self.head_started is not None or bool(self.h11.trailing_data[0])

    # --- events --------------------------------------------------------------------------

    def on_readable(self, now: float) -> None:
        """Bytes (or EOF) arrived: feed them to h11 and answer what is complete."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self.close("the client reset the connection")  # nobody is left to answer
            return
        if self.trace:
            self.trace.received(data)
        if self.phase is Phase.LINGERING:
            self._discard(data)
            return
        self.last_recv = now
        if self.head_started is None and self.h11.their_state is h11.IDLE:
            self.head_started = now
        self.h11.receive_data(data)  # b"" tells h11 the client closed its side
        self._pump(now)
        self._flush(now)

    def on_writable(self, now: float) -> None:
        """The socket has room again: send more of what is queued."""
        self._flush(now)

    def on_timeout(self, now: float) -> None:
        """The deadline passed: answer 408 to a half-sent head, otherwise just close."""
        if self.phase is Phase.OPEN and self.is_reading_head and self.h11.our_state in _CAN_ANSWER:
            self._refuse(408, "The request took too long to arrive.", now)
            self._flush(now)
        else:
            self.close(f"timed out ({self._waiting_for()})")

    def on_crash(self, error: BaseException, now: float) -> None:
        """Our bug, not the client's: log it, answer 500 if we still can, and close."""
        self.log.error(
            f"error while serving {self.peer}:\n{''.join(traceback.format_exception(error))}"
        )
        if self.phase is Phase.OPEN and self.h11.our_state in _CAN_ANSWER:
            # Through _refuse: `Connection: close` (a keep-alive client would otherwise send
            # its next request into a closing connection), and no body after HEAD.
            self._refuse(500, "The server failed; the error is in its log.", now, self.request)
            self._flush(now)
        else:
            self.close("the server failed mid-answer")

    def drain(self) -> None:
        """The server is stopping: close if idle, otherwise answer what is in flight, then close."""
        self.draining = True
        if self.is_idle:
            self.close("the server is stopping and this connection was idle")

    def close(self, why: str = "the server is done with it") -> None:
        """Done with this client; the server unregisters and closes the socket."""
        if self.trace and self.phase is not Phase.CLOSED:
            self.trace.say(f"close: {why}")
        self.phase = Phase.CLOSED
        self.outbox.close()

    def _waiting_for(self) -> str:
        if self.phase is Phase.LINGERING:
            return "the client never closed its side"
        if self.outbox:
            return "the client stopped reading its answer"
        if self.is_reading_head:
            return "the request head never finished"
        if self.h11.their_state is h11.IDLE:
            return "keep-alive idle: no next request"
        return "the request body stopped arriving"

    # --- from h11 events to replies ------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Drain h11's events until it needs more bytes, or until answers back up."""
        while self.phase is Phase.OPEN:
            if self.outbox.pending >= HIGH_WATER:
                self.held_back = True  # _flush() resumes once the client has read some
                return
            if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                self._next_cycle(now)
            if self._must_close():
                return  # after `Connection: close`, what follows is not processed
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                self._refuse(error.error_status_hint, "The request was malformed.", now)
                return
            if self.trace:
                self.trace.say(f"h11 -> {_describe(event)}")
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_request(event, now)
            elif isinstance(event, h11.Data):
                self._on_body(event)

    def _next_cycle(self, now: float) -> None:
        # A pipelined request may already sit in h11's buffer; the loop drains it at once,
        # since no readable event will come for bytes we have already read.
        self.h11.start_next_cycle()
        self.request = None
        if self.trace:
            self.trace.say("keep-alive: both sides are done; the connection waits for a request")
        self.head_started = None
        self.idle_since = now
        self.body_bytes = 0

    def _on_request(self, event: h11.Request, now: float) -> None:
        request = self.request = _plain_request(event)
        refusal = self._check_request(event, request.headers)
        if refusal is not None:
            status, sentence = refusal
            self._refuse(status, sentence, now, request)
            return
        reply = respond(request, self.config, self.cache)
        self._answer(reply, request, now, close=self._leaves_body_unread(reply, request))

    def _check_request(
        self, event: h11.Request, headers: Mapping[str, str]
    ) -> tuple[int, str] | None:
        """What h11 lets through that we must refuse ourselves (SPEC §2)."""
        # h11 only checks the head size when a head spans several reads; count it here.
        if _head_bytes(event) > self.config.max_head_bytes:
            return 431, "The request head is too large."
        if len(event.headers) > self.config.max_header_count:
            return 431, "The request has too many header fields."
        if not event.http_version.startswith(b"1."):
            # HTTP/2.0, the h2 preface `PRI * HTTP/2.0`, HTTP/3.0 (RFC 9110 §6.2).
            return 505, "This server speaks HTTP/1.1 only."
        if "content-length" in headers and "transfer-encoding" in headers:
            # Two framings: a proxy in front may pick the other one (request smuggling).
            return 400, "Content-Length and Transfer-Encoding together are not allowed."
        length = _declared_length(headers)
        if length is not None and length > self.config.max_body_bytes:
            return 413, "The request body is too large."
        return None

    def _leaves_body_unread(self, reply: Reply, request: Request) -> bool:
        """Whether answering now leaves a body we will not read, so we must close after."""
        if not _has_body(request.headers):
            return False
        # A client waiting for `100 Continue` will not send the body after a final answer.
        return reply.status >= 400 or self.h11.they_are_waiting_for_100_continue

    def _on_body(self, event: h11.Data) -> None:
        # A body on GET or HEAD means nothing to us; read it and drop it, up to the limit.
        self.body_bytes += len(event.data)
        if self.body_bytes > self.config.max_body_bytes:
            self.phase = Phase.CLOSING  # the answer is already queued; then hang up

    def _refuse(
        self, status: int, sentence: str, now: float, request: Request | None = None
    ) -> None:
        """Answer a client's mistake with an error page and close (h11's error handling)."""
        if self.h11.our_state in _CAN_ANSWER:
            reply = error_reply(status, sentence)
            if request is not None and request.method == "HEAD":
                # The page's headers without its body: h11 raises on a body after HEAD, which
                # left a refused HEAD (505, 431, ...) with no answer at all (issue 5, fuzzing).
                reply.close()
            self._answer(reply, request, now, close=True)
        self.phase = Phase.CLOSING

    def _answer(
        self, reply: Reply, request: Request | None, now: float, close: bool = False
    ) -> None:
        """Queue the reply: head and small bodies as bytes, large bodies as a file slice."""
        close = close or self.draining or self.phase is not Phase.OPEN
        response = self.heads.response(reply.status, tuple(reply.headers), close)
        self.outbox.write(self.h11.send(response) or b"")
        for piece in reply.pieces:
            if isinstance(piece, FileSlice):
                # h11 counts the slice's len() against Content-Length; the outbox sends it.
                self.h11.send_with_data_passthrough(h11.Data(data=cast(bytes, piece)))
                self.outbox.add_file(piece)
            elif piece:
                self.outbox.write(self.h11.send(h11.Data(data=piece)) or b"")
        self.outbox.write(self.h11.send(h11.EndOfMessage()) or b"")
        if self.trace:
            self.trace.say(f"h11 <- Response {reply.status}, then {reply.length} body bytes")
        self.last_send = now
        if not self.log.quiet:
            self._log(reply, request, now)

    def _log(self, reply: Reply, request: Request | None, now: float) -> None:
        if request is None:
            self.log.response(self.peer, "-", reply.status, reply.length, "", "", 0.0)
            return
        started = self.head_started if self.head_started is not None else now
        self.log.response(
            self.peer,
            f"{request.method} {request.target} HTTP/{request.http_version}",
            reply.status,
            reply.length,
            request.headers.get("referer", ""),
            request.headers.get("user-agent", ""),
            time.monotonic() - started,
        )

    # --- sending and closing -------------------------------------------------------------

    def _flush(self, now: float) -> None:
        """Send what the socket takes; when all is sent, take the next request or close."""
        while self.phase in (Phase.OPEN, Phase.CLOSING):
            try:
                sent = self.outbox.flush(self.sock)
            except OSError as error:
                # The client hung up (EPIPE, ECONNRESET), or a file shrank mid-send so the
                # promised Content-Length can no longer be kept: either way, close.
                self.close(f"sending failed: {error}")
                return
            if sent:
                self.last_send = now
            if self.outbox:
                return  # the socket is full; the server waits for it to become writable
            if self.phase is Phase.CLOSING or self._must_close():
                self._linger(now)
                return
            if not self.held_back:
                return
            self.held_back = False
            self._pump(now)  # requests held back while the outbox was full
            if not self.outbox:
                return

    def _must_close(self) -> bool:
        return self.h11.our_state in (h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)

    def _linger(self, now: float) -> None:
        """Shut our side, then drain the client's leftovers so it reads our answer, not a reset."""
        if self.h11.their_state is h11.CLOSED:
            self.close("both sides are done and the client closed first")
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close("the client is gone")
            return
        if self.trace:
            self.trace.say("shutdown(SHUT_WR): our side is done; reading what the client sends")
        self.phase = Phase.LINGERING
        self.linger_until = now + self.config.linger_seconds
        self.linger_left = self.config.linger_bytes

    def _discard(self, data: bytes) -> None:
        self.linger_left -= len(data)
        if not data or self.linger_left <= 0:
            self.close("the client closed its side after our last answer")


def _plain_request(event: h11.Request) -> Request:
    """The request as plain values: lower-case names, repeated fields joined (RFC 9110 §5.3),
    and the fields as sent, for the echo."""
    headers: dict[str, str] = {}
    raw = []
    for name, value in event.headers.raw_items():
        original, text = name.decode("ascii"), value.decode("latin-1")
        raw.append((original, text))
        key = original.lower()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=event.method.decode("ascii"),
        target=event.target.decode("latin-1"),  # every byte survives latin-1
        headers=headers,
        raw_headers=tuple(raw),
        http_version=event.http_version.decode("ascii"),
    )


def _declared_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    # h11 has checked it is digits; int() of over 4,300 digits would raise.
    return int(value) if len(value) < 19 else 10**19


def _has_body(headers: Mapping[str, str]) -> bool:
    """Whether a body follows the head (RFC 9112 §6.3: only these two headers say so)."""
    length = _declared_length(headers)
    if length is not None:
        return length > 0
    return "transfer-encoding" in headers


def _head_bytes(event: h11.Request) -> int:
    """The head's size as sent in canonical form: `name: value\r\n` per field."""
    line = len(event.method) + len(event.target) + len(b"  HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in event.headers) + 2


def _describe(event: object) -> str:
    """An h11 event in a line a reader can follow."""
    if isinstance(event, h11.Request):
        line = b"%s %s HTTP/%s" % (event.method, event.target, event.http_version)
        return f"Request {line.decode('latin-1')!r} with {len(event.headers)} header fields"
    if isinstance(event, h11.Data):
        return f"Data: {len(event.data)} body bytes"
    if event is h11.NEED_DATA:
        return "NEED_DATA: no complete event yet; wait for more bytes"
    if event is h11.PAUSED:
        return "PAUSED: the next request waits until this answer is out"
    return type(event).__name__
