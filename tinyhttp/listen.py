"""Listening sockets, and the four choices every socket makes: family, type, protocol, role."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

__all__ = ["BACKLOG", "ListenError", "is_wildcard", "open_listener", "url_for"]

# How many finished handshakes the kernel may queue before we accept() them; a burst of
# a thousand connects must not be refused (Linux caps it at net.core.somaxconn).
BACKLOG = 4096


class ListenError(Exception):
    """The socket could not be opened; the message says why and what to try."""


def open_listener(bind: str, port: int, unix: str | None = None) -> socket.socket:
    """A non-blocking listening socket on (bind, port), or on a Unix socket path."""
    if unix is not None:
        return _unix_listener(unix)
    family, address = _resolve(bind, port)
    # Family: IPv4 or IPv6, from the address. Type: SOCK_STREAM, a reliable byte stream.
    # Protocol: TCP, the only stream protocol there is. Role: server, by bind + listen.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":
            # Restart at once after a stop, despite the old connections in TIME_WAIT.
            # (On Windows this option would let two servers share a port.)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # `::` answers IPv4 too (dual-stack) only if V6ONLY is off; OS defaults differ.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if is_wildcard(bind) else 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenError(_explain(error, bind, port)) from None
    sock.setblocking(False)  # accept() must never stall the loop
    return sock


def _resolve(bind: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ListenError(f"cannot resolve {bind!r}; try --bind 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _unix_listener(path: str) -> socket.socket:
    if not hasattr(socket, "AF_UNIX"):
        raise ListenError("Unix sockets are not available here; use --bind and --port")
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenError(f"cannot listen on unix:{path}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a dead server; refuse to steal a live one."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a leftover from a server that died
        return
    except OSError as error:
        raise ListenError(f"cannot use unix:{path}: {error.strerror}") from None
    finally:
        probe.close()
    raise ListenError(f"unix:{path} is in use by a running server; choose another --unix path")


def _explain(error: OSError, bind: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use; try --port 0"
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port}; try --port 8000"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{bind} is not an address of this machine; try --bind 127.0.0.1"
    return f"cannot listen on {bind} port {port}: {error.strerror}"


def is_wildcard(bind: str) -> bool:
    """Whether the address means every interface (reachable from the network)."""
    return bind in ("0.0.0.0", "::", "")


def url_for(sock: socket.socket) -> str:
    """The URL a browser on this machine should open for a listening socket."""
    if sock.family == getattr(socket, "AF_UNIX", None):
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if is_wildcard(host):
        host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
    if ipaddress.ip_address(host).version == 6:
        host = f"[{host}]"
    return f"http://{host}:{port}/"
