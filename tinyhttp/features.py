"""What the flags and the method add around files: OPTIONS and CORS, --spa, 404.html, --header."""

from __future__ import annotations

import os
import stat

from . import negotiate
from .config import Config
from .message import Reply, Request, add_vary, error_reply
from .portable import O_NOFOLLOW, OPEN_FLAGS

__all__ = ["ALLOW", "app_shell", "custom_404", "decorate", "method_reply", "wants_app_shell"]

ALLOW = "GET, HEAD, OPTIONS"
# Methods we know but do not implement for files -> 405; any other token -> 501 (RFC 9110 §15.5.6).
_KNOWN_METHODS = {"POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE"}
# Response headers a cross-origin script may read beyond the CORS-safelisted ones.
_CORS_EXPOSE = "Content-Range, Content-Encoding, Accept-Ranges, ETag"
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def method_reply(request: Request, config: Config) -> Reply:
    """The answer to a method other than GET and HEAD."""
    method = request.method
    if method == "OPTIONS":
        return _options(request, config)
    if method in _KNOWN_METHODS:
        reply = error_reply(405, f"This server only serves files: {ALLOW}.")
        reply.headers.append(("Allow", ALLOW))
        return reply
    return error_reply(501, "This server does not know that method.")


def _options(request: Request, config: Config) -> Reply:
    """OPTIONS: what we allow; with --cors, the answer to a browser's preflight too."""
    reply = Reply(204, [("Allow", ALLOW)])
    preflight = "origin" in request.headers and "access-control-request-method" in request.headers
    if config.cors_origin is not None and preflight:
        reply.headers.append(("Access-Control-Allow-Methods", ALLOW))
        wanted = request.headers.get("access-control-request-headers", "")
        if wanted and all(_is_token(h.strip()) for h in wanted.split(",")):
            reply.headers.append(("Access-Control-Allow-Headers", wanted))
        reply.headers.append(("Access-Control-Max-Age", "86400"))
    return reply


def _is_token(text: str) -> bool:
    """An RFC 9110 §5.6.2 token: safe to reflect in a header."""
    return bool(text) and all(c in _TCHAR for c in text)


def wants_app_shell(request: Request, path: str, config: Config) -> bool:
    """--spa: a browser navigating to a client-side route (no file, no extension)."""
    if not config.spa or "." in path.rpartition("/")[2]:
        return False
    return negotiate.accepts_html(request.headers.get("accept"))


def app_shell(reply: Reply) -> Reply:
    """/index.html standing in for a client-side route."""
    add_vary(reply, "Accept")
    reply.origin = None  # the same URL may 404 for another Accept: never cache it
    return reply


def custom_404(config: Config) -> Reply | None:
    """The site's own 404.html, if it has one, as the body of every 404."""
    flags = OPEN_FLAGS | (0 if config.follow_symlinks else O_NOFOLLOW)
    try:
        fd = os.open(os.path.join(config.root, "404.html"), flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as page:
        body = page.read(config.small_file_bytes)
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return Reply(404, headers, body)


def decorate(reply: Reply, config: Config) -> None:
    """--header, and --cors (never with credentials: a wildcard must not carry cookies)."""
    reply.headers.extend(config.extra_headers)
    if config.cors_origin is None:
        return
    reply.headers.append(("Access-Control-Allow-Origin", config.cors_origin))
    reply.headers.append(("Access-Control-Expose-Headers", _CORS_EXPOSE))
    if config.cors_origin != "*":
        add_vary(reply, "Origin")  # a cache must not hand this answer to another origin
