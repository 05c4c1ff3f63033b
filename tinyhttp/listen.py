"""Listening sockets, and the four choices every socket makes: family, type, protocol, role.

`socket.socket(family, type, protocol)` takes three of the choices; the fourth is made by what
you do with the socket afterwards.

1. Family: what an address looks like, and so who can reach you.
   AF_INET  -- IPv4, ("127.0.0.1", 8000).
   AF_INET6 -- IPv6, ("::1", 8000); `::` with IPV6_V6ONLY off also answers IPv4 (dual-stack).
   AF_UNIX  -- a path on this machine's filesystem, "/tmp/tinyhttp.sock": no network at all.
2. Type: how the bytes move.
   SOCK_STREAM -- one reliable, ordered byte stream per connection, with no message boundaries
                  (one send() may arrive as three recv()s, and two sends as one).
   SOCK_DGRAM  -- separate datagrams that may be lost, duplicated or reordered
                  (scripts/udp_echo.py shows what that costs the program).
3. Protocol: which protocol gives that type in that family. For an IP stream it is TCP, for IP
   datagrams UDP; for AF_UNIX there is none to pick (0): the kernel copies the bytes itself.
4. Role: nothing in socket() says client or server. A client calls connect(). A server calls
   bind() (take an address), listen() (let the kernel complete handshakes and queue them) and
   then accept() (server.py), which returns a new socket for each client.

HTTP/1.1 needs a reliable byte stream, so tinyhttp always picks SOCK_STREAM as a server; only the
family changes, with --bind (an IPv4 or IPv6 address or a host name) and --unix (a path).
A few options are set between socket() and bind(): SO_REUSEADDR (restart at once), IPV6_V6ONLY
(dual-stack `::`) and, for --workers, SO_REUSEPORT (one port, several processes).
"""

from __future__ import annotations

import contextlib
import socket

from . import portable, unix, urls

__all__ = ["BACKLOG", "ListenError", "open_listener"]

# How many finished handshakes the kernel may queue before we accept() them; a burst of
# a thousand connects must not be refused (Linux caps it at net.core.somaxconn).
BACKLOG = 4096


class ListenError(Exception):
    """The socket could not be opened; the message says why and what to try."""


def open_listener(
    bind: str, port: int, unix: str | None = None, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking listening socket on (bind, port), or on a Unix socket path.

    `reuse_port` lets several worker processes each bind the same port (SO_REUSEPORT), so
    the kernel spreads new connections between them."""
    sock = _unix_listener(unix) if unix is not None else _tcp_listener(bind, port, reuse_port)
    sock.setblocking(False)  # accept() must never stall the loop: the selector says when
    return sock


# --- TCP over IPv4 or IPv6 -----------------------------------------------------------------


def _tcp_listener(bind: str, port: int, reuse_port: bool = False) -> socket.socket:
    family, address = _resolve(bind, port)
    try:
        # Family: IPv4 or IPv6, whichever the address is. Type: a byte stream.
        # Protocol: TCP, the stream protocol of IP. Role: server, by bind() and listen().
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as error:  # e.g. a kernel built without IPv6
        raise ListenError(
            f"cannot open a socket for {bind}: {error.strerror}; try --bind 127.0.0.1"
        ) from None
    try:
        if portable.REUSE_ADDRESS:
            # Restart at once after a stop, despite the old connections in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and urls.is_wildcard(address[0]):
            _dual_stack(sock)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenError(urls.explain(error, bind, port)) from None
    return sock


def _resolve(bind: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The family and address for --bind: an IPv4 or IPv6 literal, or a name to look up."""
    try:
        # AI_PASSIVE: we want an address to listen on, not one to connect to.
        infos = socket.getaddrinfo(
            urls.unbracket(bind), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError):
        raise ListenError(f"cannot resolve {bind!r}; try --bind 127.0.0.1") from None
    # A name may have several addresses (localhost: 127.0.0.1 and ::1); like most servers we
    # take the resolver's first choice, and print it, so nothing is hidden.
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def _dual_stack(sock: socket.socket) -> None:
    """Let one `::` socket answer IPv4 as well, as ::ffff:a.b.c.d addresses.

    The default differs (Linux: off, so dual-stack; Windows and the BSDs: on), so say it.
    """
    # OpenBSD refuses dual-stack sockets altogether: there `::` answers IPv6 only.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


# --- Unix domain sockets -------------------------------------------------------------------


def _unix_listener(path: str) -> socket.socket:
    if not portable.has_unix_sockets():
        raise ListenError("Unix sockets are not available here; use --bind and --port")
    problem = unix.clear_stale(path)
    if problem is not None:
        raise ListenError(problem)
    # Family: a filesystem path. Type: a byte stream. Protocol: none to choose (0).
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)  # creates the socket file; only who may open it can connect
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise ListenError(f"cannot listen on unix:{path}: {unix.reason(error)}") from None
    return sock
