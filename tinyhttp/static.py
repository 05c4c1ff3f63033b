"""From a request's plain values to a Reply: the security core, with no sockets and no h11."""

from __future__ import annotations

import errno
import html
import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from .config import LOOPBACK_HOSTS, Config
from .httpdate import format_http_date
from .mime import content_type
from .outbox import FileSlice

__all__ = [
    "ALLOW",
    "Refusal",
    "Reply",
    "Request",
    "error_reply",
    "host_allowed",
    "parse_target",
    "respond",
    "split_path",
]

ALLOW = "GET, HEAD, OPTIONS"
# Methods we know but do not implement for files -> 405; any other token -> 501 (RFC 9110 §15.5.6).
_KNOWN_METHODS = {"POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE"}
# Characters a path segment may keep unescaped in a Location header (RFC 3986 pchar).
_PCHAR_SAFE = "!$&'()*+,;=:@~"
_QUERY_SAFE = _PCHAR_SAFE + "/?%"
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Request:
    """A request as plain values: header names lower-case, the target exactly as sent."""

    method: str
    target: str  # raw bytes decoded as latin-1, so every byte survives
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    """What to answer: a status, headers (no Date/Server), and the body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | FileSlice = b""

    def close(self) -> None:
        """Release the file this reply holds open, if it holds one and will not be sent."""
        if isinstance(self.body, FileSlice):
            os.close(self.body.fd)


class Refusal(Exception):
    """A request we answer with an error status instead of a file."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


def respond(request: Request, config: Config) -> Reply:
    """The whole answer to one request, as a Reply."""
    try:
        reply = _respond(request, config)
    except Refusal as refusal:
        reply = error_reply(refusal.status, refusal.sentence)
    if request.method == "HEAD":
        reply.close()  # HEAD repeats GET's headers, Content-Length included, but no body
        reply.body = b""
    return reply


def _respond(request: Request, config: Config) -> Reply:
    method = request.method
    if not host_allowed(request, config):
        raise Refusal(
            400,
            "This server only answers to its own name; "
            "start it with --allow-host NAME to permit another.",
        )
    if method == "OPTIONS":
        if request.target != "*":
            parse_target(request.target)
        return Reply(204, [("Allow", ALLOW)])
    if method not in ("GET", "HEAD"):
        return _method_refusal(method)
    path, query = parse_target(request.target)
    segments = split_path(path)
    return _serve(segments, path.endswith("/"), query, config)


def _method_refusal(method: str) -> Reply:
    if method in _KNOWN_METHODS:
        reply = error_reply(405, f"This server only serves files: {ALLOW}.")
        reply.headers.append(("Allow", ALLOW))
        return reply
    return error_reply(501, "This server does not know that method.")


# --- the Host check ------------------------------------------------------------------------


def host_allowed(request: Request, config: Config) -> bool:
    """Whether a loopback-bound server may answer this Host (DNS-rebinding defence).

    A page on evil.example can point its own name at 127.0.0.1 and then read our answers;
    the one thing it cannot change is the Host header its browser sends.
    """
    if not _bound_to_loopback(config):
        return True
    names = [request.headers.get("host", "")]
    if request.target.lower().startswith("http://"):
        names.append(request.target[7:].partition("/")[0])  # absolute-form carries one too
    return all(_allowed_name(name, config) for name in names if name)


def _bound_to_loopback(config: Config) -> bool:
    if config.unix is not None:
        return True
    try:
        return ipaddress.ip_address(config.bind).is_loopback
    except ValueError:
        return config.bind == "localhost"  # the server replaces names by what it bound


def _allowed_name(host: str, config: Config) -> bool:
    name = host.lower()
    if not name.startswith("["):
        name = name.rpartition(":")[0] or name  # drop the port
    elif "]:" in name:
        name = name[: name.index("]:") + 1]
    allowed = (*LOOPBACK_HOSTS, *(h.lower() for h in config.allow_hosts))
    return name in allowed or name.endswith(".localhost")


# --- from the target to path segments (pure) -----------------------------------------------


def parse_target(target: str) -> tuple[str, str]:
    """The percent-decoded path and the raw query of an origin- or absolute-form target."""
    if target[:7].lower() == "http://" or target[:8].lower() == "https://":
        authority_and_path = target.partition("://")[2]
        target = "/" + authority_and_path.partition("/")[2]
    elif not target.startswith("/"):
        raise Refusal(400, "The request target must be a path starting with /.")
    raw_path, _, query = target.partition("#")[0].partition("?")
    try:
        # Decode exactly once: a second decode is how %252e%252e becomes .. (CVE-2001-0333).
        path = unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "The path is not valid UTF-8.") from None
    if any(c < " " or c in "\\\x7f" for c in path):
        raise Refusal(400, "The path holds a control character or a backslash.")
    return path, query


def split_path(path: str) -> list[str]:
    """The path's segments with `.` and `..` resolved; climbing above the root is a 404."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if not segments:
                raise Refusal(404, "There is nothing above the root.")
            segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return segments


def _url_path(segments: list[str], query: str, slash: bool) -> str:
    """A path for a Location header: exactly one leading slash, so never `//evil.example`."""
    path = "/" + "/".join(quote(s, safe=_PCHAR_SAFE) for s in segments)
    if slash and segments:
        path += "/"
    if query:
        path += "?" + quote_from_bytes(query.encode("latin-1"), safe=_QUERY_SAFE)
    return path


# --- from segments to a file ---------------------------------------------------------------


def _serve(segments: list[str], slash: bool, query: str, config: Config) -> Reply:
    _check_hidden(segments, config)
    fd, info = _open_inside(segments, config)
    if stat.S_ISREG(info.st_mode):
        return _file_reply(fd, info, segments[-1] if segments else "", config)
    os.close(fd)  # a directory: only its name mattered
    if not slash and segments:
        # CPython gh-87389: build the Location from the normalised path, never from the
        # raw target, or `//evil.example/..` redirects a browser off-site.
        return _redirect(_url_path(segments, query, slash=True))
    for name in config.index_files:
        try:
            fd, info = _open_inside([*segments, name], config)
        except Refusal:
            continue
        if stat.S_ISREG(info.st_mode):
            return _file_reply(fd, info, name, config)
        os.close(fd)
    raise Refusal(404, "This folder has no index file.")


def _check_hidden(segments: list[str], config: Config) -> None:
    for position, segment in enumerate(segments):
        if segment == ".git":
            raise Refusal(404, "No such file.")  # never, not even with --dotfiles
        well_known = position == 0 and segment == ".well-known"  # RFC 8615
        if segment.startswith(".") and not config.dotfiles and not well_known:
            raise Refusal(404, "No such file.")


def _open_inside(segments: list[str], config: Config) -> tuple[int, os.stat_result]:
    """Open the file the segments name, only if it really lies inside the root."""
    root = str(config.root)
    candidate = os.path.join(root, *segments)  # segments hold no '/' and no NUL
    try:
        real = os.path.realpath(candidate)
        if not config.follow_symlinks and not _inside(root, real):
            raise Refusal(404, "No such file.")
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
        fd = os.open(real if not config.follow_symlinks else candidate, _OPEN_FLAGS)
    except OSError as error:
        raise _refusal_for(error) from None
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        os.close(fd)  # FIFO, socket or device: never served
        raise Refusal(404, "No such file.")
    return fd, info


def _inside(root: str, real: str) -> bool:
    """Whether `real` lies in `root`, compared by whole components, and not inside .git."""
    # By components: /www-secret starts with the string /www but is not inside it.
    if os.path.commonpath([root, real]) != root:
        return False
    return ".git" not in os.path.relpath(real, root).split(os.sep)  # nor through a link


def _refusal_for(error: OSError) -> Refusal:
    """An OS error as the status a client should see: never a 500."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refusal(403, "This file is not readable by the server.")
    return Refusal(404, "No such file.")


def _file_reply(fd: int, info: os.stat_result, name: str, config: Config) -> Reply:
    headers = [
        ("Content-Type", content_type(name)),
        ("Content-Length", str(info.st_size)),
        ("Last-Modified", format_http_date(info.st_mtime)),
        # Strong, and the same on every host serving the same file version (SPEC §5).
        ("ETag", f'"{info.st_size:x}-{info.st_mtime_ns:x}"'),
        # Browsers revalidate every time: an edit shows on reload, a hit costs a 304.
        ("Cache-Control", "no-cache"),
    ]
    if info.st_size > config.small_file_bytes:
        return Reply(200, headers, FileSlice(fd, 0, info.st_size))
    with os.fdopen(fd, "rb") as file:
        body = file.read(info.st_size)  # a file that grew is cut at the size we promise
    if len(body) != info.st_size:
        headers[1] = ("Content-Length", str(len(body)))  # it shrank between fstat and read
    return Reply(200, headers, body)


def _redirect(location: str) -> Reply:
    link = html.escape(location)
    reply = error_reply(301, f'It is at <a href="{link}">{link}</a>.')
    reply.headers.append(("Location", location))
    return reply


def error_reply(status: int, sentence: str) -> Reply:
    """A small HTML page with the status and one sentence (which must be safe HTML)."""
    title = f"{status} {HTTPStatus(status).phrase}"
    body = (
        f'<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>{title}</title>\n'
        f"<h1>{title}</h1>\n<p>{sentence}</p>\n</html>\n"
    ).encode()
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return Reply(status, headers, body)
