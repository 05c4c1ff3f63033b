"""--workers N: N processes each running the loop on one port, the dead ones replaced.

The supervisor serves nothing itself. It forks the workers, waits for signals, replaces a
worker that dies, and on Ctrl-C or SIGTERM passes SIGTERM on and waits for them to drain.
On Linux each worker has its own socket bound with SO_REUSEPORT, and the kernel spreads new
connections between them; elsewhere they share the one listening socket they inherit. Either
way the supervisor opens the sockets and keeps them: the port accepts connections as soon as
the server says where it is, and the connections waiting on a worker that dies are served by
the one that replaces it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import replace
from types import FrameType

from . import portable
from .config import Config
from .listen import open_listener
from .server import Server
from .unix import remove_socket_file
from .urls import url_for

__all__ = ["Supervisor"]

# Signals held back across fork(): one arriving before a worker has its own handlers would
# run the parent's handler in the child. They are delivered once unblocked.
_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}


class Supervisor:
    """Starts `count` workers, keeps them running, and stops them on a signal."""

    def __init__(self, config: Config, count: int, tls: ssl.SSLContext | None = None) -> None:
        # A plain bind first proves the port free: with SO_REUSEPORT alone, a second tinyhttp
        # would quietly share the first one's port instead of saying it is in use.
        probe = open_listener(config.bind, config.port, config.unix)
        self.url = url_for(probe.family, probe.getsockname(), "http" if tls is None else "https")
        self.tls = tls
        if config.unix is None:
            host, port = probe.getsockname()[:2]
            config = replace(config, bind=host, port=port)
        self.config = config
        self.count = count
        self.cut = 0  # answers cut by a drain: each worker logs its own
        # One listening socket shared by every worker, or (SO_REUSEPORT) one per worker: a
        # worker that dies leaves its socket, and the backlog queued on it, to its successor.
        self._free = [probe]
        self._each_own = config.unix is None and portable.reuse_port(config)
        if self._each_own:
            probe.close()
            self._free = [
                open_listener(config.bind, config.port, reuse_port=True) for _ in range(count)
            ]
        self._children: dict[int, tuple[float, socket.socket]] = {}  # pid -> started, listener
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
            for listener in self._listeners():
                listener.close()
            remove_socket_file(self.config)

    def _listeners(self) -> set[socket.socket]:
        return {*self._free, *(listener for _, listener in self._children.values())}

    def _timeout(self) -> float | None:
        if not self._restarts or self._stopping:
            return None
        return max(0.0, min(self._restarts) - time.monotonic())

    def _spawn(self) -> None:
        listener = self._free.pop() if self._each_own else self._free[0]
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        pid = os.fork()
        if pid == 0:
            self._run_worker(listener)  # never returns
        self._children[pid] = (time.monotonic(), listener)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)

    def _run_worker(self, listener: socket.socket) -> None:
        status = 0
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._lifeline_writer)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the parent turns it into SIGTERM.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for other in self._listeners() - {listener}:
                other.close()  # the other workers' sockets
            server = Server(self.config, listener=listener, tls=self.tls)
            server.catch_signals((signal.SIGTERM,))
            # Our end of the lifeline reads end-of-file once the supervisor is gone, however
            # it ended (SIGKILL included): a thread waits for that and stops the loop.
            lifeline = threading.Thread(target=_stop_on_eof, args=(self._lifeline_reader, server))
            lifeline.daemon = True
            lifeline.start()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
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
            child = self._children.pop(pid, None)
            if child is None:
                continue
            started, listener = child
            if self._each_own:
                self._free.append(listener)  # with its backlog, for the next worker
            if self._stopping:
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


def _stop_on_eof(fd: int, server: Server) -> None:
    while os.read(fd, 4096):  # nothing is ever written: this returns at end of file
        pass
    server.stop()  # safe from another thread: a flag, then a byte down the wake-up pair


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"
