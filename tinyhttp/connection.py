"""One client: recv() chunks into h11, each request to the app, each answer into the outbox.

Theory of operation
-------------------
The server makes a Connection for every socket accept() returns, and calls it when the socket
is readable (on_readable), writable (on_writable) or its deadline has passed (on_timeout).

h11 keeps the HTTP state of both sides: whether a request is arriving, whether our answer is
done, whether the connection may be kept alive. We add only what h11 does not know, `phase`:

    OPEN       serving requests. Every recv() chunk goes to h11, and its events are drained
               (_pump) until it needs more bytes; each request becomes a Reply, whose head and
               body h11 turns into bytes for the outbox.
    CLOSING    the answer queued last is the last one (we refused its request, its body
               was over the limit, or the server is stopping): send what is queued, then
               close, lingering first if the client may still be sending. (A client that
               asks to close is h11's MUST_CLOSE state, and ends the same way.)
    LINGERING  our side is shut (shutdown(SHUT_WR)): read and drop what the client still
               sends, for a moment, so that it reads our answer instead of a reset
               (RFC 9112 §9.6).
    CLOSED     done: the server unregisters the socket and closes it.

One deadline, and what it waits for (`waiting`), set where they change:

    accepted, or a request's first byte  HEAD    head_timeout later, however the bytes trickle
    an answer queued, or bytes sent      SEND    send_timeout later
    all sent, kept alive                 IDLE    idle_timeout later
    all sent, a request still arriving   HEAD    head_timeout after that request's first byte
    all sent, an event stream open       STREAM  heartbeat_seconds later: a comment, not a close
    our side shut                        LINGER  linger_seconds later

An answer may go on without end (an event stream, for --reload): h11 keeps our side in
SEND_BODY, push() sends each event through it, and the drain ends it with the last chunk.
Its client has nothing more to say: EOF or any byte from it closes the connection.

The socket may be a TLSStream (tls.py), which reads and writes like one. Ownership: the
server owns the socket (it registers, unregisters and closes it); the
connection owns its h11.Connection and its outbox; the outbox owns every file descriptor
queued in it and closes each one when its last byte is sent or the connection closes.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import h11

from . import checks, wire
from .config import Config
from .log import AccessLog, Exchange, Ledger, Trace
from .message import FileSlice, Refusal, Reply, Request, Stream, error_reply
from .outbox import Outbox

if TYPE_CHECKING:
    from .tls import TLSStream

__all__ = ["Connection", "Phase", "Shared", "Wait"]

RECV_BYTES = 64 * 1024
# The states in which we may still send a response (h11 docs, "error handling").
_CAN_ANSWER = (h11.IDLE, h11.SEND_RESPONSE)
_MUST_CLOSE = (h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
_END = h11.EndOfMessage()  # immutable: one for every answer


class Phase(enum.Enum):
    """Where a connection is in its life, beyond what h11 tracks."""

    OPEN = "open"
    CLOSING = "closing"
    LINGERING = "lingering"
    CLOSED = "closed"


class Wait(enum.Enum):
    """What a connection's deadline is waiting for: the Config limit, and the close reason."""

    HEAD = ("head_timeout", "the request never finished arriving")
    SEND = ("send_timeout", "the client stopped reading its answer")
    IDLE = ("idle_timeout", "keep-alive idle: no next request")
    LINGER = ("linger_seconds", "the client never closed its side")
    STREAM = ("heartbeat_seconds", "an event stream said nothing for a while")


@dataclass
class Shared:
    """What every connection of one server shares."""

    config: Config
    log: AccessLog
    heads: wire.Heads
    respond: Callable[[Request], Reply]  # the app: a request in, its answer out
    sendfile: bool = True  # whether files go out by os.sendfile()
    gather: bool = True  # whether several buffers go out in one sendmsg()
    stopping: bool = False  # the server is draining: every answer is the last one
    heartbeat: bytes = b""  # what an event stream says when it has said nothing for a while
    tls: bool = False  # every socket is a TLSStream (tls.py)
    timeouts: dict[Wait, float] = field(init=False)  # each Wait's limit, looked up once

    def __post_init__(self) -> None:
        self.timeouts = {why: getattr(self.config, why.value[0]) for why in Wait}


@dataclass(slots=True)
class Incoming:
    """The request arriving now: when it began, and the bytes received for it so far."""

    started: float
    fed: int = 0  # bytes given to h11 since it began: its head, its body, maybe more
    request: Request | None = None  # once its head is complete
    body: int = 0  # bytes of its body read (and dropped) so far


class Connection:
    """The state of one client, driven by the server's readable, writable and timeout events."""

    # Slots, not a __dict__: 10,000 idle connections should cost little memory each.
    __slots__ = (
        "deadline",
        "h11",
        "incoming",
        "linger_left",
        "outbox",
        "peer",
        "phase",
        "shared",
        "sock",
        "trace",
        "waiting",
    )

    def __init__(
        self,
        sock: socket.socket | TLSStream,  # a TLS stream reads and writes like a socket
        peer: str,
        shared: Shared,
        now: float,
        trace: Trace | None,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.shared = shared
        self.trace = trace  # None unless --trace: each hook costs one test of None
        limit = shared.config.max_head_bytes
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
        self.outbox = Outbox(shared.sendfile, trace, shared.gather)
        self.phase = Phase.OPEN
        self.incoming = Incoming(now)
        self.linger_left = 0
        self.waiting = Wait.HEAD
        self.deadline = now + shared.config.head_timeout

    # --- what the server asks --------------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        if self.phase is Phase.OPEN:
            return self.h11.our_state not in _MUST_CLOSE and not self.outbox.full()
        return self.phase is Phase.LINGERING

    @property
    def wants_write(self) -> bool:
        # A TLS stream may hold bytes of its own, such as a handshake flight (tls.py).
        held = bool(self.outbox) or (self.shared.tls and self._tls().wants_write)
        return held and (self.phase is Phase.OPEN or self.phase is Phase.CLOSING)

    def may_make_room(self) -> float:
        """From when this connection may be closed to make room for a newcomer: at once if
        it is kept alive with nothing to do, once it has had `evict_after` to send a whole
        request if one is due, never while a request is being answered."""
        if self.waiting is Wait.IDLE:
            return 0.0
        if self.waiting is Wait.HEAD and self.h11.their_state is h11.IDLE and not self.outbox:
            return self.incoming.started + self.shared.config.evict_after
        return float("inf")

    # --- events ----------------------------------------------------------------------------

    def on_readable(self, now: float) -> None:
        """Bytes (or EOF) arrived: feed them to h11 and answer what is complete."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as error:  # reset, or (TLS) not TLS or a broken record
            self.close(f"the connection failed: {error}", "client-gone")
            return
        if self.trace:
            self.trace.received(data)
        if self.phase is Phase.LINGERING:
            self._discard(data)
            return
        if self.h11.our_state is h11.SEND_BODY:  # an event stream, whose client says no more:
            # EOF, or bytes that h11 would buffer without bound behind an endless answer.
            self.close("the client hung up on, or spoke over, the event stream", "client-gone")
            return
        if data and not self.incoming.fed:
            # A request's first byte: its deadline counts from now (set by _all_sent once
            # nothing is left to send, unless this request is answered first).
            self.incoming.started = now
        self.incoming.fed += len(data)
        self.h11.receive_data(data)  # b"" tells h11 the client closed its side
        self._pump(now)
        self._flush(now)

    def on_writable(self, now: float) -> None:
        """The socket has room again: send more of what is queued."""
        if self.shared.tls and not self.outbox and self._tls().wants_write:
            with contextlib.suppress(BlockingIOError):
                self._tls().flush()  # the stream's own held bytes
        self._flush(now)

    def on_timeout(self, now: float) -> None:
        """The deadline passed: answer 408 to a half-sent head, keep an event stream
        alive with a comment, otherwise just close."""
        if self.waiting is Wait.STREAM:
            self.push(self.shared.heartbeat, now)
            return
        head_begun = self.incoming.fed and self.h11.their_state is h11.IDLE
        if self.waiting is Wait.HEAD and head_begun and self.h11.our_state in _CAN_ANSWER:
            self._refuse(Refusal(408, "The request took too long to arrive."), now)
            self._flush(now)
        elif self.waiting is Wait.HEAD and not self.incoming.fed:
            self.close("timed out (no request arrived)")
        else:
            cut = "send-timeout" if self.waiting is Wait.SEND else "timeout"
            self.close(f"timed out ({self.waiting.value[1]})", cut)

    def on_crash(self, now: float) -> None:
        """Our bug, not the client's (the server logged it): answer 500 if we still can, and
        close."""
        if self.phase is Phase.OPEN and self.h11.our_state in _CAN_ANSWER:
            # Through _refuse: `Connection: close` (a keep-alive client would otherwise send
            # its next request into a closing connection), and no body after HEAD.
            refusal = Refusal(500, "The server failed; the error is in its log.")
            self._refuse(refusal, now, self.incoming.request)
            self._flush(now)
        else:
            self.close("the server failed mid-answer", "error")

    def drain(self, now: float) -> None:
        """The server is stopping: close now if idle, end an event stream, or let the answer
        in flight be the last."""
        if self.phase is not Phase.OPEN:
            return
        if self.h11.our_state is h11.SEND_BODY:
            self.outbox.write(self.h11.send(_END) or b"")  # the chunked body's last chunk
            self.outbox.answers.end(self.outbox.queued)
            self.phase = Phase.CLOSING
            self._flush(now)
        elif not self.outbox and not self.incoming.fed:
            self.close("the server is stopping and this connection was idle")

    def push(self, data: bytes, now: float) -> None:
        """Send more of an answer that does not end (an event stream); h11 frames it."""
        if self.trace:
            self.trace.say(f"push: {len(data)} bytes to the event stream")
        self.outbox.write(self.h11.send(h11.Data(data=data)) or b"")
        self._flush(now)

    def close(self, why: str = "the server is done with it", cut: str = "closed") -> int:
        """Done with this client; the server unregisters and closes the socket. Answers not
        yet sent are logged as `cut`; returns how many there were."""
        if self.phase is Phase.CLOSED:
            return 0
        if self.trace:
            self.trace.say(f"close: {why}")
        self.phase = Phase.CLOSED
        unsent = self.outbox.close()  # which leaves `sent` as it was
        self.shared.log.cut(unsent, self.outbox.sent, time.monotonic(), cut)
        return len(unsent)

    def _tls(self) -> TLSStream:
        return cast("TLSStream", self.sock)  # only called when the server wraps every socket

    def _wait(self, why: Wait, since: float) -> None:
        self.waiting, self.deadline = why, since + self.shared.timeouts[why]

    # --- from h11 events to answers --------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Take h11's events until it needs more bytes (h11's drain loop), or until answers
        back up, or until the connection is to close."""
        while self.phase is Phase.OPEN and not self.outbox.full():
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                self._refuse(wire.refusal(error), now)
                return
            if self.trace:
                self.trace.say(f"h11 -> {wire.describe(event)}")
            # type() is, as h11 itself tests events: isinstance() on its abstract Event
            # classes takes the slow path through ABCMeta.
            kind = type(event)
            if kind is h11.Request:
                self._on_request(cast(h11.Request, event), now)
            elif kind is h11.Data:
                self._on_body(cast(h11.Data, event))
            elif kind is h11.EndOfMessage:
                # We answer as soon as a head is in, so their request ending is what
                # completes a cycle (unless our answer streams on).
                if self.h11.our_state is h11.DONE:
                    self._next_cycle(now)
            else:
                return  # NEED_DATA, PAUSED (our answer is not done), ConnectionClosed

    def _next_cycle(self, now: float) -> None:
        # Keep-alive: both sides are done. A pipelined request may already sit in h11's
        # buffer; the pump goes on at once (RFC 9112 §9.3.2), as no readable event will
        # come for bytes already read.
        self.h11.start_next_cycle()
        incoming = self.incoming  # the same record, made new for the next request
        incoming.started, incoming.fed = now, len(self.h11.trailing_data[0])
        incoming.request, incoming.body = None, 0
        if self.trace:
            self.trace.say("keep-alive: both sides are done; the connection waits for a request")

    def _on_request(self, event: h11.Request, now: float) -> None:
        # What arrived beyond this head (its body, the next request) is still in h11's buffer.
        head_bytes = self.incoming.fed - len(self.h11.trailing_data[0])
        secure = self._tls().summary() if self.shared.tls else ""  # "TLSv1.3 TLS_AES_..."
        request = self.incoming.request = wire.plain_request(event, head_bytes, secure)
        refusal = checks.malformed(request, self.shared.config)
        if refusal is not None:
            self._refuse(refusal, now, request)
            return
        reply = self.shared.respond(request)
        awaits = self.h11.they_are_waiting_for_100_continue
        self._answer(reply, request, now, close=checks.body_unread(request, reply.status, awaits))

    def _on_body(self, event: h11.Data) -> None:
        # A body on GET or HEAD means nothing to us; read it and drop it, up to the limit.
        self.incoming.body += len(event.data)
        if self.incoming.body > self.shared.config.max_body_bytes:
            self.phase = Phase.CLOSING  # the answer is already queued; then hang up

    def _refuse(self, refusal: Refusal, now: float, request: Request | None = None) -> None:
        """Answer with an error page and close (h11's error handling); an event stream whose
        client sent what h11 cannot take is ended as a stop ends it."""
        if self.h11.our_state is h11.SEND_BODY:
            self.drain(now)
        elif self.h11.our_state in _CAN_ANSWER:
            reply = error_reply(refusal.status, refusal.sentence)
            if request is not None and request.method == "HEAD":
                reply.close()  # the page's headers without its body: h11 refuses a body here
            self._answer(reply, request, now, close=True)
        self.phase = Phase.CLOSING

    def _answer(self, reply: Reply, request: Request | None, now: float, close: bool) -> None:
        """Queue the reply: h11 writes the head; small bodies go as bytes, large as slices."""
        close = close or self.shared.stopping or self.phase is not Phase.OPEN
        goes_on = isinstance(reply.body, Stream)  # an event stream: see push() and drain()
        if close and not goes_on:  # the last answer: h11 parses nothing more after it
            self.phase = Phase.CLOSING
        response = self.shared.heads.response(reply.status, tuple(reply.headers), close)
        outbox = self.outbox
        outbox.write(self.h11.send(response) or b"")
        exchange = Exchange(self.peer, request, self.incoming.started, reply.status, outbox.queued)
        for piece in reply.pieces:
            if isinstance(piece, FileSlice):
                # h11 counts the slice's len() against Content-Length; the outbox sends it.
                self.h11.send_with_data_passthrough(h11.Data(data=cast(bytes, piece)))
                outbox.add_file(piece)
            elif piece:
                outbox.write(self.h11.send(h11.Data(data=piece)) or b"")
        if not goes_on:
            outbox.write(self.h11.send(_END) or b"")  # b"" when Content-Length frames it
        outbox.answers.add(exchange, Ledger.NEVER if goes_on else outbox.queued)
        if self.trace:
            self.trace.say(f"h11 <- Response {reply.status}, then {reply.length} body bytes")

    # --- sending and closing ---------------------------------------------------------------

    def _flush(self, now: float) -> None:
        """Send what the socket takes; once answers stop backing up, take the next requests;
        once everything is sent, wait for the next request or close."""
        while self.phase is Phase.OPEN or self.phase is Phase.CLOSING:
            backed_up = self.outbox.full()
            try:
                sent = self.outbox.flush(self.sock)
            except OSError as error:
                # The client hung up (EPIPE, ECONNRESET), or a file shrank mid-send so the
                # promised Content-Length can no longer be kept: either way, close.
                self.close(f"sending failed: {error}", "client-gone")
                return
            self.shared.log.done(self.outbox.answers.take(self.outbox.sent))
            if self.outbox and (sent or self.waiting is not Wait.SEND):
                self._wait(Wait.SEND, now)  # output queued, or progressing
            if backed_up and not self.outbox.full() and self.phase is Phase.OPEN:
                self._pump(now)  # requests held back in h11 while answers backed up
                continue
            if not self.outbox:
                self._all_sent(now)
            return

    def _all_sent(self, now: float) -> None:
        if self.h11.our_state is h11.SEND_BODY:  # an event stream: on_readable sees its end
            self._wait(Wait.STREAM, now)
        elif self.phase is Phase.CLOSING or self.h11.our_state in _MUST_CLOSE:
            if self._nothing_more_coming():  # its request read whole: no need to linger
                self.close("answered, and the client has nothing more to send")
            else:
                self._linger(now)
        elif self.h11.their_state is h11.IDLE and not self.incoming.fed:
            self._wait(Wait.IDLE, now)
        else:
            self._wait(Wait.HEAD, self.incoming.started)  # a request is still arriving

    def _nothing_more_coming(self) -> bool:
        """After a normal last answer: whether the client has sent all it meant to, so that
        closing at once resets nothing (as nginx decides when to linger): its request done,
        nothing left in h11's buffer nor in the kernel's."""
        # MUST_CLOSE: its request is done and it said close.
        if self.h11.their_state not in (h11.DONE, h11.MUST_CLOSE) or self.h11.trailing_data[0]:
            return False
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)  # b"": it has closed its side too
        except OSError:  # BlockingIOError: nothing there; any other: it is gone
            return True

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
        self.linger_left = self.shared.config.linger_bytes
        self._wait(Wait.LINGER, now)

    def _discard(self, data: bytes) -> None:
        self.linger_left -= len(data)
        if not data or self.linger_left <= 0:
            self.close("the client closed its side after our last answer")
