"""Every platform difference in one place: what this OS offers, looked up once.

Linux is the first-class platform (epoll, sendfile, SO_REUSEPORT); macOS and Windows still run
tinyhttp, each missing piece replaced by a plain fallback chosen here. `Config` can force the
fallbacks that matter for speed (`use_sendfile`, `use_reuse_port`), so the tests run both paths
on Linux too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from .config import Config

__all__ = [
    "CAN_FORK",
    "OPEN_FLAGS",
    "O_NOFOLLOW",
    "REUSE_ADDRESS",
    "STOP_SIGNALS",
    "gather",
    "has_unix_sockets",
    "options_inherited",
    "raise_open_files_limit",
    "reuse_port",
    "sendfile",
    "unsent_lowat",
]

# O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever. O_CLOEXEC: a worker
# forked later must not inherit the files another request opened. Both 0 on Windows.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
# SO_REUSEADDR lets a server restart at once despite old connections in TIME_WAIT; on
# Windows it would instead let two servers share a port.
REUSE_ADDRESS = os.name != "nt"
# --workers needs fork(); Windows has none.
CAN_FORK = hasattr(os, "fork")
# Ctrl-C everywhere; SIGTERM (what `kill` and service managers send) where it exists.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


# The socket module is imported inside the functions that need it, not above: the file side
# of tinyhttp (static.py and its helpers) imports this module for its open() flags, and
# never touches the network.


def has_unix_sockets() -> bool:
    """Whether this system has Unix domain sockets (not older Windows)."""
    import socket

    return hasattr(socket, "AF_UNIX")


def unsent_lowat() -> int | None:
    """TCP_NOTSENT_LOWAT (Linux, macOS), which bounds what the kernel queues for a client
    before sending it; None elsewhere."""
    import socket

    return getattr(socket, "TCP_NOTSENT_LOWAT", None)


def gather() -> bool:
    """Whether socket.sendmsg() exists to send several buffers in one call (not on Windows)."""
    import socket

    return hasattr(socket.socket, "sendmsg")


def options_inherited() -> bool:
    """Whether a socket accept() returns keeps the TCP options set on the listening socket
    (Linux copies them), so they need setting once instead of once per connection."""
    return sys.platform.startswith("linux")


def sendfile(config: Config) -> bool:
    """Whether files go out by os.sendfile() (zero-copy) rather than read() + send()."""
    return config.use_sendfile and hasattr(os, "sendfile")


def reuse_port(config: Config) -> bool:
    """Whether each worker binds its own socket with SO_REUSEPORT: only Linux balances new
    connections between them (macOS's SO_REUSEPORT gives them all to one process)."""
    import socket

    linux = sys.platform.startswith("linux")
    return config.use_reuse_port and linux and hasattr(socket, "SO_REUSEPORT")


def raise_open_files_limit() -> None:
    """Let every connection have its file descriptor: raise the soft limit to the hard one."""
    try:
        import resource
    except ImportError:
        return  # Windows has no such limit to raise
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # macOS refuses RLIM_INFINITY; the soft limit then still works.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
