"""The event loop: one selector waits on every socket and calls back whoever is ready."""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import select
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, replace
from functools import partial
from types import FrameType

from .cache import FileCache
from .config import Config
from .connection import Connection, Heads, Phase
from .httpdate import DateClock
from .listen import can_reuse_port, open_listener, url_for
from .log import AccessLog, Tracer

__all__ = ["Server", "Supervisor"]

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# accept() several connections per wake-up: a burst of connects then costs one select().
ACCEPT_BATCH = 64
# When accept() fails for lack of file descriptors, stop accepting this long: under a
# level-triggered selector the listener stays readable and the loop would spin at 100 % CPU.
ACCEPT_BACKOFF = 0.1
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Bytes the kernel may hold for a client before it has even sent them. Unbounded, the send
# buffer grows to MiBs and a slow but steady reader frees too little of it to ever make the
# socket writable again, so the send timeout (SPEC §9) cut it as if it took nothing (issue 5).
# Bounded, every writable event is real progress, and throughput is unchanged on loopback.
UNSENT_BYTES = 128 * 1024


@dataclass(slots=True)
class _Slot:
    """What the selector and the deadline heap currently hold for one connection."""

    conn: Connection | None  # None once forgotten: a stale heap entry must not keep it alive
    events: int
    deadline: float = float("inf")  # the connection's earliest entry in the heap

    def __lt__(self, other: _Slot) -> bool:
        return False  # two entries due at the same moment may run in either order


class Server:
    """Listens, accepts, and runs every connection from one selector loop."""

    def __init__(
        self, config: Config, log: AccessLog | None = None, listener: socket.socket | None = None
    ) -> None:
        # A worker process gets its listener from the supervisor; otherwise open our own.
        self._owns_listener = listener is None
        self.listener = listener or open_listener(config.bind, config.port, config.unix)
        self.url = url_for(self.listener)
        if config.unix is None:
            # Keep the address really bound (a host name resolved, port 0 made real), so the
            # Host check knows whether we are on loopback.
            host, port = self.listener.getsockname()[:2]
            config = replace(config, bind=host, port=port)
        self.config = config
        self.log = log or AccessLog(quiet=config.quiet, as_json=config.log_json)
        self.tracer = Tracer(self.log.stream) if config.trace else None
        self.heads = Heads(DateClock())
        self.cache = (
            FileCache(config.cache_bytes, config.cache_settle_seconds)
            if config.cache_bytes
            else None
        )
        self.selector = selectors.DefaultSelector()
        self.clients: dict[Connection, _Slot] = {}
        self.deadlines: list[tuple[float, _Slot]] = []
        self._accepting_again_at: float | None = None  # set while accept() is paused
        self._stop_requested = False
        self._drain_until: float | None = None
        self._signals_caught = False
        self._lifeline = -1
        # Signals and stop() wake select() through this pair (PEP 475 would otherwise
        # resume a select() with no timeout as if nothing happened).
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.selector.register(self.listener, READ, self._accept)
        self.selector.register(self._wake_reader, READ, self._wake)

    # --- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until stopped, then let in-flight responses finish and close everything."""
        try:
            while not self._finished():
                for key, mask in self.selector.select(self._timeout()):
                    if isinstance(key.data, Connection):
                        self._serve(key.data, mask)  # a client (no callback object each)
                    else:
                        key.data(mask)  # _accept or _wake
                self._tick(time.monotonic())
        finally:
            self._close_all()

    def stop_when_closed(self, fd: int) -> None:
        """Drain and stop once `fd`, the read end of a pipe, reports end of file: a worker's
        way to notice that its supervisor is gone, even if it was killed with SIGKILL."""
        self._lifeline = fd
        self.selector.register(fd, READ, self._lifeline_closed)

    def _lifeline_closed(self, mask: int) -> None:
        self.selector.unregister(self._lifeline)  # readable for ever from now on
        self.stop()

    def stop(self) -> None:
        """Ask the loop to drain and return; safe from another thread or a signal handler."""
        self._stop_requested = True
        # If the wake-up pipe is full or closed, the loop is waking anyway.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _finished(self) -> bool:
        if self._drain_until is None:
            return False
        return not self.clients or time.monotonic() >= self._drain_until

    def _timeout(self) -> float | None:
        """How long select() may sleep: until the nearest deadline, or forever."""
        times = [t for t in (self._accepting_again_at, self._drain_until) if t is not None]
        if self.deadlines:
            times.append(self.deadlines[0][0])
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _tick(self, now: float) -> None:
        """Run whatever is due: expired deadlines, and accepting again after a pause."""
        while self.deadlines and self.deadlines[0][0] <= now:
            when, slot = heapq.heappop(self.deadlines)
            conn = slot.conn
            if conn is None or slot.deadline != when:
                continue  # the connection is gone, or this entry was superseded
            slot.deadline = float("inf")
            if conn.deadline <= now:
                self._guarded(conn, partial(conn.on_timeout, now), now)
            else:
                self._settle(conn)  # it moved later: one new entry, at the real deadline
        if self._accepting_again_at is not None and now >= self._accepting_again_at:
            self._resume_accepting()

    # --- accepting -----------------------------------------------------------------------

    def _accept(self, mask: int) -> None:
        now = time.monotonic()
        for _ in range(ACCEPT_BATCH):
            full = len(self.clients) >= self.config.max_connections
            victim = self._room_to_make() if full else None
            if full and victim is None:
                self._pause_accepting(None)  # full: resume when a connection closes
                return
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
                # Only once someone is really waiting: closing before accept() would drop a
                # connection for nobody (often the one this loop accepted a moment ago).
                victim.close("the connection limit was reached and this one was idle or slowest")
                self._forget(victim)
            self._add_client(sock, address, now)

    def _add_client(self, sock: socket.socket, address: object, now: float) -> None:
        sock.setblocking(False)
        if sock.family != getattr(socket, "AF_UNIX", None):
            # We write whole responses at once; Nagle's algorithm would only delay them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux, macOS
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_BYTES)
        peer = address[0] if isinstance(address, tuple) else "unix"
        trace = self.tracer.accepted(peer) if self.tracer else None
        conn = Connection(sock, peer, self.config, self.log, self.heads, now, self.cache, trace)
        self.clients[conn] = _Slot(conn, READ)
        self.selector.register(sock, READ, conn)
        self._settle(conn)

    def _room_to_make(self) -> Connection | None:
        """At the connection limit, who gives up its place: an idle keep-alive connection,
        else the oldest one still sending its head. None if every connection is busy."""
        # Kept alive after an answer (cheap for a client to reopen). A connection accepted
        # a moment ago is idle too, but it has not had its turn to send: its request may
        # be waiting unread, so it counts by age below, the newest last (issue 5).
        kept_alive = next((c for c in self.clients if c.is_idle and c.idle_since > c.opened), None)
        if kept_alive is not None:
            return kept_alive
        heads = [c for c in self.clients if c.is_reading_head or c.is_idle]
        return min(heads, key=lambda c: c.head_started or c.opened, default=None)

    def _pause_accepting(self, until: float | None) -> None:
        if self._accepting_again_at is None and self.listener.fileno() != -1:
            self.selector.unregister(self.listener)
        self._accepting_again_at = until if until is not None else float("inf")

    def _resume_accepting(self) -> None:
        self._accepting_again_at = None
        if self._drain_until is None:
            self.selector.register(self.listener, READ, self._accept)

    # --- serving clients -----------------------------------------------------------------

    def _serve(self, conn: Connection, mask: int) -> None:
        now = time.monotonic()
        if mask & READ:
            self._guarded(conn, partial(conn.on_readable, now), now)
        if mask & WRITE and conn.phase is not Phase.CLOSED:
            self._guarded(conn, partial(conn.on_writable, now), now)

    def _guarded(self, conn: Connection, action: partial[None], now: float) -> None:
        try:
            action()
        except Exception as error:  # the one top-level guard: one bad connection never
            try:  # takes the loop, and everyone else on it, down with it (SPEC §9)
                conn.on_crash(error, now)
            except Exception as second:  # answering the first failed too: say so, then close
                self.log.error("".join(traceback.format_exception(second)))
                conn.close("the server failed while handling an error")
        self._settle(conn)

    def _settle(self, conn: Connection) -> None:
        """Bring the selector and the deadline heap up to date with the connection."""
        if self._drain_until is not None:
            conn.drain()  # stopping: close it if idle, else after this answer
        if conn.phase is Phase.CLOSED:
            self._forget(conn)
            return
        slot = self.clients[conn]
        # Ask the kernel to change interest only when it changes: it is a system call.
        events = (READ if conn.wants_read else 0) | (WRITE if conn.wants_write else 0)
        if events and events != slot.events:
            self.selector.modify(conn.sock, events, conn)
            slot.events = events
        # Deadlines move later with every request; rather than a heap entry per move, keep
        # one entry per connection and re-check it when it comes due (see _tick).
        deadline = conn.deadline
        if deadline < slot.deadline:
            slot.deadline = deadline
            heapq.heappush(self.deadlines, (deadline, slot))

    def _forget(self, conn: Connection) -> None:
        slot = self.clients.pop(conn, None)
        if slot is None:
            return
        slot.conn = None
        if len(self.deadlines) > 2 * len(self.clients) + 1024:
            # Mostly entries of closed connections (many short ones): keep the live ones.
            self.deadlines = [entry for entry in self.deadlines if entry[1].conn is not None]
            heapq.heapify(self.deadlines)
        self.selector.unregister(conn.sock)
        conn.sock.close()
        if self._accepting_again_at == float("inf"):
            self._resume_accepting()  # a place is free again

    # --- stopping ------------------------------------------------------------------------

    def _wake(self, mask: int) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        if self._stop_requested and self._drain_until is None:
            self._begin_drain()

    def _begin_drain(self) -> None:
        """Stop accepting; close idle connections; let the others finish their answer."""
        now = time.monotonic()
        self._drain_until = now + self.config.drain_timeout
        if self._accepting_again_at is None:
            self.selector.unregister(self.listener)
        self._accepting_again_at = None
        self.listener.close()
        for conn in list(self.clients):
            self._settle(conn)

    def catch_signals(self, names: tuple[str, ...] = ("SIGINT", "SIGTERM")) -> None:
        """Make Ctrl-C and SIGTERM drain and stop the loop (call from the main thread)."""
        self._signals_caught = True
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        for name in names:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested:
            os._exit(130)  # a second Ctrl-C: the user does not want to wait for the drain
        self._stop_requested = True  # set_wakeup_fd has already woken select()

    def _close_all(self) -> None:
        for conn in list(self.clients):
            conn.close("the server stopped")
            self._forget(conn)
        if self.listener.fileno() != -1:
            self.listener.close()
        if self._owns_listener:
            _remove_socket_file(self.config)
        if self._signals_caught:
            signal.set_wakeup_fd(-1)
        self.selector.close()
        self._wake_reader.close()
        self._wake_writer.close()


def _remove_socket_file(config: Config) -> None:
    if config.unix is not None and os.path.exists(config.unix):
        os.unlink(config.unix)


# --- several processes (SPEC §10) ------------------------------------------------------------


class Supervisor:
    """--workers N: N processes each running a Server on one port; the dead are replaced."""

    def __init__(self, config: Config, count: int) -> None:
        # A plain bind first proves the port free: with SO_REUSEPORT alone, a second tinyhttp
        # would quietly share the first one's port instead of saying it is in use.
        probe = open_listener(config.bind, config.port, config.unix)
        self.url = url_for(probe)
        if config.unix is None:
            host, port = probe.getsockname()[:2]
            config = replace(config, bind=host, port=port)
        self.config = config
        self.count = count
        # Linux balances SO_REUSEPORT sockets between processes; elsewhere (macOS does not
        # balance) the workers share the one listening socket they inherit.
        self._shared: socket.socket | None = probe
        if config.unix is None and can_reuse_port():
            probe.close()
            self._shared = None
        self._children: dict[int, float] = {}  # pid -> when it started
        self._restarts: list[float] = []  # when each pending restart may happen
        self._stopping = False
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        # Workers hold the read end; only we hold the write end, so when we end, however we
        # end, they read end-of-file and drain instead of serving on as orphans.
        self._lifeline_reader, self._lifeline_writer = os.pipe()

    def catch_signals(self) -> None:
        """Ctrl-C and SIGTERM stop the workers; SIGCHLD wakes us to replace a dead one."""
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wake-up fd is enough

    def serve(self) -> None:
        """Start the workers, keep them running, and return once they have all drained."""
        for _ in range(self.count):
            self._spawn()
        try:
            while self._children or (self._restarts and not self._stopping):
                select.select([self._wake_reader], [], [], self._timeout())
                with contextlib.suppress(BlockingIOError):
                    while self._wake_reader.recv(4096):
                        pass
                self._reap()
                self._restart_due()
        finally:
            if self._shared is not None:
                self._shared.close()
            _remove_socket_file(self.config)

    def _timeout(self) -> float | None:
        if not self._restarts or self._stopping:
            return None
        return max(0.0, min(self._restarts) - time.monotonic())

    def _spawn(self) -> None:
        # Hold signals across fork(): one arriving before the worker has its own handlers
        # would run the parent's handler in the child. They are delivered once unblocked.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            self._run_worker()  # never returns
        self._children[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def _run_worker(self) -> None:
        status = 0
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._lifeline_writer)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the parent turns it into SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            listener = self._shared or open_listener(
                self.config.bind, self.config.port, reuse_port=True
            )
            server = Server(self.config, listener=listener)
            server.catch_signals(("SIGTERM",))
            server.stop_when_closed(self._lifeline_reader)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            server.serve()
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            os._exit(status)

    def _reap(self) -> None:
        """Collect exited workers; schedule a replacement unless we are stopping."""
        while self._children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            started = self._children.pop(pid, None)
            if started is None or self._stopping:
                continue
            print(
                f"tinyhttp: worker {pid} exited ({_describe(status)}); starting another",
                file=sys.stderr,
                flush=True,
            )
            # One that dies at once would die again: wait a second rather than spin.
            now = time.monotonic()
            self._restarts.append(now + 1.0 if now - started < 1.0 else now)

    def _restart_due(self) -> None:
        now = time.monotonic()
        due = [t for t in self._restarts if t <= now]
        self._restarts = [t for t in self._restarts if t > now]
        if not self._stopping:
            for _ in due:
                self._spawn()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:  # a second Ctrl-C: stop now, workers included
            for pid in list(self._children):
                os.kill(pid, signal.SIGKILL)
            os._exit(130)
        self._stopping = True
        for pid in list(self._children):
            os.kill(pid, signal.SIGTERM)  # each drains its in-flight answers, then exits


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGCHLD", signal.SIGTERM)}


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"
