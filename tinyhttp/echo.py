"""The echo: a request head shown back as plain text, as h11 received it, secrets redacted."""

from __future__ import annotations

from collections.abc import Iterable

from .config import Config
from .message import Reply, Request

__all__ = ["PATH", "REDACTED", "SECRET_HEADERS", "echo_body", "echo_reply", "enabled"]

# Under /.well-known/ (RFC 8615), the one dot-folder served by default, so no site file
# is likely to be hidden by it.
PATH = "/.well-known/tinyhttp/echo"
# These values are credentials: shown back, a screenshot or a pasted log would leak them.
SECRET_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
REDACTED = "[redacted]"


def enabled(config: Config) -> bool:
    """On by default, and only on loopback: behind a network bind, headers a proxy adds
    would be shown to anyone."""
    return config.echo and config.loopback


def echo_reply(request: Request) -> Reply:
    """The built-in echo: this request's own head as plain text."""
    # HEAD gets the Content-Length a GET of the same request would (RFC 9110 §9.3.2).
    method = "GET" if request.method == "HEAD" else request.method
    body = echo_body(method, request.target, request.http_version, request.raw_headers)
    if request.secure:  # what HTTPS added below the request: the TLS session it came over
        body += f"(received over {request.secure})\r\n".encode("ascii")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),  # every request differs: never keep one
    ]
    return Reply(200, headers, body)


def echo_body(
    method: str, target: str, http_version: str, raw_headers: Iterable[tuple[str, str]]
) -> bytes:
    """The request line and header lines, CRLF-ended as on the wire, then the empty line.

    Names keep the case the client sent (h11's `raw_items()`); every value is the client's
    own bytes (decoded as latin-1, so encoding back gives them unchanged), except secrets.
    Nothing is escaped: the answer is text/plain with nosniff, never HTML.
    """
    lines = [f"{method} {target} HTTP/{http_version}"]
    for name, value in raw_headers:
        shown = REDACTED if name.lower() in SECRET_HEADERS else value
        lines.append(f"{name}: {shown}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
