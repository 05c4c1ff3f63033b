"""Helpers for the socket tests: what this machine supports, and programs run as processes.

A process's output is read line by line by threads, every wait has a deadline, and the
process is killed on the way out whatever the test did.
"""

from __future__ import annotations

import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

TIMEOUT = 10.0  # every wait for a line or an exit gives up after this long


# --- what this machine supports ------------------------------------------------------------


def _can_bind(family: int, address: str, v6only: int | None = None) -> bool:
    """Whether this machine lets us listen on `address` (and set IPV6_V6ONLY as asked)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            if v6only is not None:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
                if probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) != v6only:
                    return False
            probe.bind((address, 0))
    except (OSError, AttributeError):
        return False
    return True


HAS_IPV6 = socket.has_ipv6 and _can_bind(socket.AF_INET6, "::1")
HAS_DUAL_STACK = HAS_IPV6 and _can_bind(socket.AF_INET6, "::", v6only=0)
HAS_UNIX = hasattr(socket, "AF_UNIX")

needs_ipv6 = pytest.mark.skipif(
    not HAS_IPV6, reason="no IPv6 here: socket.has_ipv6 is false or ::1 cannot be bound"
)
needs_dual_stack = pytest.mark.skipif(
    not HAS_DUAL_STACK, reason="this OS does not let one `::` socket answer IPv4 (IPV6_V6ONLY=0)"
)
needs_unix = pytest.mark.skipif(not HAS_UNIX, reason="no Unix domain sockets on this platform")


@contextmanager
def unix_socket_path(tmp_path: Path) -> Iterator[Path]:
    """A path for a Unix socket, short enough for sun_path (108 bytes on Linux, 104 on macOS)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path / "s.sock"
        return
    folder = tempfile.mkdtemp(prefix="tinyhttp-", dir="/tmp")  # macOS's $TMPDIR is long
    try:
        yield Path(folder) / "s.sock"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- programs run as processes -------------------------------------------------------------


class Process:
    """One Python process; stdout lines can be awaited, stderr is collected."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: IO[bytes], lines: list[str], announce: bool) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if announce:
                self._lines.put(line)
        if announce:
            self._lines.put(None)  # end of output

    def next_line(self, timeout: float = TIMEOUT) -> str:
        """The next stdout line; fails the test if none comes within `timeout` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line within {timeout} s; stdout {self.stdout}, stderr {self.stderr}")
        if line is None:
            self._lines.put(None)  # stay at the end for the next caller
            pytest.fail(f"output ended; stdout {self.stdout}, stderr {self.stderr}")
        return line

    def line_where(self, wanted: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """Skip stdout lines until one is wanted (each line waited for with the deadline)."""
        while not wanted(line := self.next_line(timeout)):
            pass
        return line

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit by itself; its exit status."""
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send a signal (Ctrl-C by default) and wait for the exit status."""
        self.popen.send_signal(signum)
        return self.finish()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(TIMEOUT)
        for reader in self._readers:
            reader.join(TIMEOUT)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running(*args: str) -> Iterator[Process]:
    """Run `python ARGS...`; killed on the way out if it is still running."""
    process = Process(list(args))
    try:
        yield process
    finally:
        process.close()


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Run `python ARGS...` to the end and capture its output, bytes exactly as written."""
    return subprocess.run(
        [sys.executable, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )
