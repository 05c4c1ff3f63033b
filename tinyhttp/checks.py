"""What h11 lets through that a server must refuse itself: pure checks of one request.

h11 parses a request and enforces HTTP/1.1's grammar, but some requests are well-formed and
still dangerous or beyond our limits. Each check here looks only at the plain `Request`.
"""

from __future__ import annotations

import ipaddress
import re

from .config import Config
from .message import Refusal, Request

__all__ = [
    "absolute_form",
    "declared_length",
    "has_body",
    "host_refusal",
    "malformed",
    "valid_authority",
]

# RFC 3986 §3.2.2 reg-name: unreserved / pct-encoded / sub-delims, any number of them.
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
# IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
_IP_FUTURE = re.compile(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_PORT = re.compile(r"[0-9]*")


def malformed(request: Request, config: Config) -> Refusal | None:
    """A refusal for a request we must not serve as it came (the connection closes after)."""
    if request.head_bytes > config.max_head_bytes:
        # Counted as the bytes arrived: h11 only checks a head split across reads, and
        # measures it after removing whitespace and folds.
        return Refusal(431, "The request head is too large.")
    if len(request.raw_headers) > config.max_header_count:
        return Refusal(431, "The request has too many header fields.")
    if not request.http_version.startswith("1."):
        # HTTP/2.0, the h2 preface `PRI * HTTP/2.0`, HTTP/3.0 (RFC 9110 §6.2).
        return Refusal(505, "This server speaks HTTP/1.1 only.")
    if len(request.target) > config.max_target_bytes:
        return Refusal(414, "The request target is too long.")
    headers = request.headers
    if "content-length" in headers and "transfer-encoding" in headers:
        # Two framings: a proxy in front may pick the other one (request smuggling).
        return Refusal(400, "Content-Length and Transfer-Encoding together are not allowed.")
    if "content-length" in headers and declared_length(request) > config.max_body_bytes:
        return Refusal(413, "The request body is too large.")
    return None


def _bad_authority(request: Request) -> Refusal | None:
    # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that [...] contains a Host header field with an invalid field
    # value." In absolute form the target's authority is checked as well.
    host = request.headers.get("host")
    if host is not None and not valid_authority(host, empty_ok=True):
        return Refusal(400, "The Host header is not a valid host name and port.")
    absolute = absolute_form(request.target)
    if absolute is not None and not valid_authority(absolute[0], empty_ok=False):
        # An http URI names no user (RFC 9110 §4.2.4), so `http://name@evil.example/` is
        # refused rather than guessed at, and its host may not be empty.
        return Refusal(400, "The request target's host is not a valid host name and port.")
    return None


def valid_authority(value: str, empty_ok: bool) -> bool:
    """Whether `value` is `host [ ":" port ]` as RFC 3986 §3.2.2 and §3.2.3 define them."""
    if value.startswith("["):
        literal, bracket, port = value[1:].partition("]")
        if not bracket or not _ip_literal(literal):
            return False
        return port == "" or (port[0] == ":" and _PORT.fullmatch(port, 1) is not None)
    name, _, port = value.partition(":")  # a reg-name holds no colon
    if not name and not empty_ok:
        return False
    return _REG_NAME.fullmatch(name) is not None and _PORT.fullmatch(port) is not None


def _ip_literal(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return _IP_FUTURE.fullmatch(text) is not None
    return "%" not in text  # a zone index is not part of RFC 3986's IP-literal


def host_refusal(request: Request, config: Config) -> Refusal | None:
    """A refusal for a Host that is not a host, or on a loopback bind one that does not
    name this machine (DNS rebinding).

    A page on evil.example can point its own name at 127.0.0.1 and then read our answers;
    the one thing it cannot change is the host name its browser sends.
    """
    bad = _bad_authority(request)
    if bad is not None or config.unix is not None or not config.loopback:
        # No browser can reach a Unix socket (rebinding needs TCP): only local programs
        # allowed to open the socket file, such as `curl --unix-socket PATH http://x/`.
        return bad
    absolute = absolute_form(request.target)
    # RFC 9112 §3.2.2: with an absolute-form target the server "MUST ignore the received
    # Host header field" and use the target's authority instead.
    name = absolute[0] if absolute is not None else request.headers.get("host", "")
    if not name or _our_name(name, config):
        return None
    return Refusal(
        400,
        "This server only answers to its own name; "
        "start it with --allow-host NAME to permit another.",
    )


def _our_name(authority: str, config: Config) -> bool:
    name = authority.lower()
    # Without its port: `[::1]:8000` -> `[::1]`, `localhost:8000` -> `localhost`.
    name = name[: name.index("]") + 1] if name.startswith("[") else name.partition(":")[0]
    if name in config.host_names or name.endswith(".localhost"):
        return True
    try:  # 127.0.0.2 or [::1] are this machine too (--bind 127.0.0.2 prints such a URL)
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def absolute_form(target: str) -> tuple[str, str] | None:
    """(authority, origin-form rest) of an `http://host/path?q` target; None for other forms."""
    scheme, separator, rest = target.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return None
    # The authority ends at the first /, ? or #: `http://host?x` has the path "/".
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:end], "/" + rest[end:].removeprefix("/")


def declared_length(request: Request) -> int:
    """The Content-Length the client declared, 0 if none (h11 has checked its digits)."""
    value = request.headers.get("content-length")
    if value is None:
        return 0
    # int() of over 4,300 digits would raise (CVE-2020-10735); no body is that long.
    return int(value) if len(value) < 19 else 10**19


def body_unread(request: Request, status: int, awaits_continue: bool) -> bool:
    """Whether the request's body is left unread, so that its connection cannot be reused:
    we refused the request, the client awaits `100 Continue` (which a final answer cancels),
    or the body comes chunked. Parsing thousands of one-byte chunks only to drop them would
    burn the one core every client shares; after the answer, lingering drops them unparsed."""
    if not has_body(request):
        return False
    return status >= 400 or awaits_continue or "transfer-encoding" in request.headers


def has_body(request: Request) -> bool:
    """Whether a body follows the head (RFC 9112 §6.3: only these two headers say so)."""
    return declared_length(request) > 0 or "transfer-encoding" in request.headers
