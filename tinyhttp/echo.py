"""The echo: a request head shown back as plain text, as h11 received it, secrets redacted."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PATH", "REDACTED", "SECRET_HEADERS", "echo_body"]

# Under /.well-known/ (RFC 8615), the one dot-folder served by default, so no site file
# is likely to be hidden by it.
PATH = "/.well-known/tinyhttp/echo"
# These values are credentials: shown back, a screenshot or a pasted log would leak them.
SECRET_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
REDACTED = "[redacted]"


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
