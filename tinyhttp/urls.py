"""A listening address as a person reads it: the URL to open, and what went wrong binding it."""

from __future__ import annotations

import errno
import ipaddress
import socket

__all__ = ["explain", "is_wildcard", "unbracket", "url_for"]


def unbracket(host: str) -> str:
    """`[::1]` as written in URLs is the address `::1`."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_wildcard(bind: str) -> bool:
    """Whether the address means every interface (reachable from the network)."""
    host = unbracket(bind)
    if host == "":
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified  # 0.0.0.0, ::, 0::0, ...
    except ValueError:
        return False  # a host name: the bound address says what it became


def url_for(family: int, address: object, scheme: str = "http") -> str:
    """The URL a browser on this machine should open for a listener bound to `address`
    (what getsockname() says)."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return f"unix:{address}"  # e.g. curl --unix-socket PATH http://localhost/
    assert isinstance(address, tuple)
    host, port = address[:2]
    if is_wildcard(host):
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
    if family == socket.AF_INET6:
        host = f"[{host}]"  # RFC 3986 §3.2.2: an IPv6 literal in a URL goes in brackets
    return f"{scheme}://{host}:{port}/"


def explain(error: OSError, bind: str, port: int) -> str:
    """Why bind() or listen() failed, in one line with a way out."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use; try --port 0"
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port}; try --port 8000"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{bind} is not an address of this machine; try --bind 127.0.0.1"
    return f"cannot listen on {bind} port {port}: {error.strerror}"
