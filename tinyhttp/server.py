"""The event loop: one selector waits on every socket and calls back whoever is ready.

Theory of operation
-------------------
The server owns the listening socket, the selector and every client socket (each client's
HTTP state belongs to its Connection). One loop does all the work:

    for key, mask in selector.select(timeout):    # sleep until a socket is ready
        key.data(mask)                             # _accept, the wake-up, or a client's _serve
    _run_due(now)                                  # deadlines that have passed

A socket accept() returns is read at once (its request is most often there already) and is
registered with the selector only if the connection lives on. With HTTPS each one is first
wrapped in a TLSStream (tls.py), which the connection reads and writes like the socket.

After a client's handler has run, `_settle` tells the selector what the connection now waits
for (readable, writable) and puts its deadline in the heap. select() sleeps until the
nearest deadline, so an idle server wakes only when there is something to do (and, with
--reload, when the folder's watcher is due to look again).

Deadlines live in a heap of (when, n, slot), a slot being what the server keeps for one
connection. A connection's deadline moves later with every request, and a heap cannot move
an entry: so each connection keeps one entry, at the earliest time it may expire, and when
that entry comes due the connection's real deadline is read. If it has moved, one new entry
is pushed. A closed connection's slot lets go of it, so entries left behind hold no memory
worth speaking of; they are skipped, and pruned when they outnumber the living.

At the connection limit a newcomer waits in the kernel's backlog until a connection closes or
one may give up its place (Connection.may_make_room): kept-alive idle ones at once, others
only once they have had time to send a request; never one whose request waits unread.

Stopping: a signal or stop() wakes select() (wakeup.py) and sets a flag; at the end of that
turn of the loop the server stops accepting, closes idle connections, ends event streams and
lets the others finish their answer until the drain deadline; what is still going out then
is cut, and counted.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import selectors
import socket
import ssl
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from . import portable, reload
from .app import App
from .config import Config
from .connection import Connection, Phase, Shared, Wait
from .httpdate import DateClock
from .listen import open_listener
from .log import AccessLog, Tracer
from .tls import TLSStream
from .unix import remove_socket_file
from .urls import url_for
from .wakeup import Wakeup
from .wire import Heads

__all__ = ["Server"]

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# accept() several connections per wake-up: a burst of connects then costs one select().
ACCEPT_BATCH = 64
# When accept() fails for lack of file descriptors, stop accepting this long: under a
# level-triggered selector the listener stays readable and the loop would spin at 100 % CPU.
ACCEPT_BACKOFF = 0.1
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Bytes the kernel may hold for a client before it has even sent them. Unbounded, the send
# buffer grows to MiBs and a slow but steady reader frees too little of it to ever make the
# socket writable again, so the send timeout would cut it as if it took nothing. Bounded,
# every writable event is real progress, and throughput is unchanged on loopback.
UNSENT_BYTES = 128 * 1024


@dataclass(slots=True)
class _Slot:
    """What the selector and the deadline heap hold for one connection."""

    conn: Connection | None  # None once the connection is closed
    callback: Callable[[int], None] | None  # what the selector calls when the socket is ready
    events: int = 0  # what the selector watches for; 0 until it is registered
    scheduled: float = float("inf")  # the connection's earliest entry in the heap


class Server:
    """Listens, accepts, and runs every connection from one selector loop."""

    def __init__(
        self,
        config: Config,
        log: AccessLog | None = None,
        listener: socket.socket | None = None,
        tls: ssl.SSLContext | None = None,  # HTTPS: each client socket wrapped (tls.py)
    ) -> None:
        # A worker process gets its listener from the supervisor; otherwise open our own.
        self._owns_listener = listener is None
        self.listener = listener or open_listener(config.bind, config.port, config.unix)
        scheme = "http" if tls is None else "https"
        self.url = url_for(self.listener.family, self.listener.getsockname(), scheme)
        self.tls = tls
        self.config = config = _bound(config, self.listener)
        self.log = log or AccessLog(quiet=config.quiet, as_json=config.log_json)
        self.tracer = Tracer(self.log) if config.trace else None
        # --reload: the watcher is polled from this loop, between events (reload.py).
        self.watcher = reload.Watcher(str(config.root), time.monotonic()) if config.reload else None
        self.shared = self._shared(App(config, watcher=self.watcher, streams=self._open_streams))
        self.selector = selectors.DefaultSelector()
        self.clients: dict[Connection, _Slot] = {}
        self.deadlines: list[tuple[float, int, _Slot]] = []
        self._numbers = itertools.count()  # breaks ties between deadlines due at once
        self._accepting_again_at: float | None = None  # set while accept() is paused
        self._drain_until: float | None = None
        self.cut = 0  # answers cut short by the end of the drain
        self.wakeup = Wakeup()
        self._tuned_listener = _tune_listener(self.listener)
        self.selector.register(self.listener, READ, self._accept)
        self.selector.register(self.wakeup.reader, READ, self.wakeup.drain)

    def _shared(self, app: App) -> Shared:
        """What every connection shares: the app, the log, and how to send."""
        shared = Shared(self.config, self.log, Heads(DateClock()), app.respond)
        # sendfile() would hand the file's bytes to the kernel past TLS: read + send instead.
        shared.sendfile = portable.sendfile(self.config) and self.tls is None
        shared.gather = portable.gather()
        shared.heartbeat = reload.HEARTBEAT
        shared.tls = self.tls is not None
        return shared

    # --- the loop --------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until stopped, then let in-flight responses finish and close everything."""
        try:
            while not self._finished():
                for key, mask in self.selector.select(self._timeout()):
                    key.data(mask)
                self._run_due(time.monotonic())
                if self.wakeup.stop_requested and self._drain_until is None:
                    self._begin_drain()
                self.log.flush()  # the access log lines of this turn, in one write
        finally:
            self._close_all()

    def _timeout(self) -> float | None:
        """How long select() may sleep: until the nearest deadline, or forever."""
        times = [t for t in (self._accepting_again_at, self._drain_until) if t is not None]
        if self.watcher is not None:
            times.append(self.watcher.next_poll)
        if self.deadlines:
            times.append(self.deadlines[0][0])
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _run_due(self, now: float) -> None:
        """Time out the connections whose deadline has passed; accept again after a pause."""
        while self.deadlines and self.deadlines[0][0] <= now:
            when, _, slot = heapq.heappop(self.deadlines)
            conn = slot.conn
            if conn is None or slot.scheduled != when:
                continue  # the connection is gone, or an earlier entry replaced this one
            slot.scheduled = float("inf")
            if conn.deadline <= now:
                self._call(conn, conn.on_timeout, now)
            else:
                self._settle(conn)  # it moved: one new entry, at the real time
        if self._accepting_again_at is not None and now >= self._accepting_again_at:
            self._resume_accepting()
        if self.watcher is not None and now >= self.watcher.next_poll:
            self._announce(self.watcher.poll(now), now)

    def _announce(self, event: str | None, now: float) -> None:
        """Tell every open event stream that files changed (--reload)."""
        if event is None:
            return
        frame = reload.frame(event)
        for conn in [c for c in self.clients if c.waiting is Wait.STREAM]:
            self._call(conn, conn.push, frame, now)

    def _open_streams(self) -> int:
        return sum(conn.waiting is Wait.STREAM for conn in self.clients)

    def _finished(self) -> bool:
        """Stopping, and nobody left to wait for or no more time to wait."""
        until = self._drain_until
        return until is not None and (not self.clients or time.monotonic() >= until)

    # --- accepting -------------------------------------------------------------------------

    def _accept(self, mask: int) -> None:
        now = time.monotonic()
        for _ in range(ACCEPT_BATCH):
            victim = None
            if len(self.clients) >= self.config.max_connections:
                victim = self._room_to_make(now)
                if victim is None:
                    return  # paused: the newcomer waits in the kernel's backlog
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _OUT_OF_FDS:
                    self._pause_accepting(now + ACCEPT_BACKOFF)
                    return
                continue  # ECONNABORTED and friends: that client is already gone
            if victim is not None:
                # Only now that someone is really waiting: closing first might free a place
                # for nobody.
                victim.close("the connection limit was reached and this one was idle or slow")
                self._forget(victim)
            self._add_client(sock, address, now)

    def _room_to_make(self, now: float) -> Connection | None:
        """At the connection limit, who gives up its place; None (and accepting paused
        until one may) if nobody can yet."""
        candidate = min(self.clients, key=Connection.may_make_room)
        when = candidate.may_make_room()
        if when <= now:
            return candidate
        self._pause_accepting(when)  # inf: until a connection closes
        return None

    def _add_client(self, sock: socket.socket, address: object, now: float) -> None:
        sock.setblocking(False)
        if not self._tuned_listener:
            _tune(sock)
        peer = address[0] if isinstance(address, tuple) else "unix"
        trace = self.tracer.accepted(peer) if self.tracer else None
        stream = sock if self.tls is None else TLSStream(sock, self.tls, trace)
        conn = Connection(stream, peer, self.shared, now, trace)
        self.clients[conn] = _Slot(conn, partial(self._serve, conn))
        # Its request is most often here already: read it now, and register the socket with
        # the selector only if the connection lives on (a short one then costs no epoll_ctl).
        self._serve(conn, READ)

    def _pause_accepting(self, until: float) -> None:
        if self._accepting_again_at is None:
            self.selector.unregister(self.listener)
        self._accepting_again_at = until

    def _resume_accepting(self) -> None:
        self._accepting_again_at = None
        if self._drain_until is None:
            self.selector.register(self.listener, READ, self._accept)

    # --- serving clients -------------------------------------------------------------------

    def _serve(self, conn: Connection, mask: int) -> None:
        now = time.monotonic()
        try:
            if mask & READ:
                conn.on_readable(now)
            if mask & WRITE and conn.phase is not Phase.CLOSED:
                conn.on_writable(now)
        except Exception as error:  # the one top-level guard: one bad connection never
            self._crashed(conn, error, now)  # takes the loop, and everyone else, down with it
        self._settle(conn)

    def _crashed(self, conn: Connection, error: Exception, now: float) -> None:
        trace = "".join(traceback.format_exception(error))
        self.log.error(f"error while serving {conn.peer}:\n{trace}")
        try:
            conn.on_crash(now)
        except Exception as second:  # answering the first failed too: say so, then close
            self.log.error("".join(traceback.format_exception(second)))
            conn.close("the server failed while handling an error", "error")

    def _call(self, conn: Connection, handler: Callable[..., None], *args: object) -> None:
        """Run one connection's handler outside _serve, under the same guard, then settle."""
        try:
            handler(*args)
        except Exception as error:  # as in _serve: this connection only
            self._crashed(conn, error, time.monotonic())
        self._settle(conn)

    def _settle(self, conn: Connection) -> None:
        """Bring the selector and the deadline heap up to date with the connection."""
        if self._drain_until is not None:
            conn.drain(time.monotonic())  # stopping: close it if idle, else after this answer
        if conn.phase is Phase.CLOSED:
            self._forget(conn)
            return
        slot = self.clients[conn]
        # Ask the kernel to change interest only when it changes: it is a system call.
        events = (READ if conn.wants_read else 0) | (WRITE if conn.wants_write else 0)
        if events and events != slot.events:
            if slot.events:
                self.selector.modify(conn.sock, events, slot.callback)
            else:
                self.selector.register(conn.sock, events, slot.callback)
            slot.events = events
        if conn.deadline < slot.scheduled:
            slot.scheduled = conn.deadline
            heapq.heappush(self.deadlines, (conn.deadline, next(self._numbers), slot))

    def _forget(self, conn: Connection) -> None:
        slot = self.clients.pop(conn, None)
        if slot is None:
            return
        slot.conn = slot.callback = None  # its heap entries must not keep it alive
        if len(self.deadlines) > 2 * len(self.clients) + 1024:
            # Mostly entries of closed connections (many short ones): keep the live ones.
            self.deadlines = [entry for entry in self.deadlines if entry[2].conn is not None]
            heapq.heapify(self.deadlines)
        if slot.events:
            self.selector.unregister(conn.sock)
        conn.sock.close()
        if self._accepting_again_at is not None:
            self._resume_accepting()  # a place is free again

    # --- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain and return; safe from another thread or a signal handler."""
        self.wakeup.stop()

    def catch_signals(self, signals: tuple[int, ...] = portable.STOP_SIGNALS) -> None:
        """Make Ctrl-C and SIGTERM drain and stop the loop (call from the main thread)."""
        self.wakeup.catch(signals)

    def _begin_drain(self) -> None:
        """Stop accepting; close idle connections; let the others finish their answer."""
        self._drain_until = time.monotonic() + self.config.drain_timeout
        self.shared.stopping = True  # every answer from now on says Connection: close
        if self._accepting_again_at is None:
            self.selector.unregister(self.listener)
        self._accepting_again_at = None
        self.listener.close()
        for conn in list(self.clients):
            self._settle(conn)

    def _close_all(self) -> None:
        for conn in list(self.clients):
            self.cut += conn.close("the drain deadline passed", "drain")
            self._forget(conn)
        if self.listener.fileno() != -1:
            self.listener.close()
        if self._owns_listener:
            remove_socket_file(self.config)
        self.log.flush()
        self.selector.close()
        self.wakeup.close()


def _bound(config: Config, listener: socket.socket) -> Config:
    """The config with the address really bound (a host name resolved, port 0 made real),
    so the Host check knows whether the server is on loopback."""
    if config.unix is not None:
        return config
    host, port = listener.getsockname()[:2]
    return replace(config, bind=host, port=port)


def _tune_listener(listener: socket.socket) -> bool:
    """Set the client connections' TCP options once, on the listener, where every socket
    accept() returns inherits them (Linux); False where each must get them itself."""
    tcp = listener.family in (socket.AF_INET, socket.AF_INET6)
    if portable.options_inherited() and tcp:
        _tune(listener)
        return True
    return not tcp  # a Unix socket has no TCP options to set


def _tune(sock: socket.socket) -> None:
    """The TCP options of a client connection (or of the listener its sockets inherit from)."""
    # We write whole responses at once; Nagle's algorithm would only delay them.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lowat = portable.unsent_lowat()
    if lowat is not None:
        sock.setsockopt(socket.IPPROTO_TCP, lowat, UNSENT_BYTES)
