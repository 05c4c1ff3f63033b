"""From a request's plain values to a Reply: the security core, with no sockets and no h11."""

from __future__ import annotations

import errno
import html
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from . import conditional, echo, listing, negotiate, ranges
from .cache import Cached, FileCache, Identity
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
# Precompressed siblings, in order of preference: brotli is the smaller of the two.
_CODINGS = (("br", ".br"), ("gzip", ".gz"))
# Response headers a cross-origin script may read beyond the CORS-safelisted ones.
_CORS_EXPOSE = "Content-Range, Content-Encoding, Accept-Ranges, ETag"

Body = bytes | FileSlice | list[bytes | FileSlice]


@dataclass(frozen=True)
class Request:
    """A request as plain values: header names lower-case, the target exactly as sent."""

    method: str
    target: str  # raw bytes decoded as latin-1, so every byte survives
    headers: Mapping[str, str] = field(default_factory=dict)
    # The head as h11 received it (names in the client's case), for the echo.
    raw_headers: tuple[tuple[str, str], ...] = ()
    http_version: str = "1.1"


@dataclass
class Reply:
    """What to answer: a status, headers (no Date/Server), and the body."""

    status: int
    headers: list[tuple[str, str]]
    body: Body = b""
    origin: Cached | None = None  # set when the reply may be cached as it is

    @property
    def pieces(self) -> list[bytes | FileSlice]:
        """The body as a list of bytes and file slices."""
        return self.body if isinstance(self.body, list) else [self.body]

    @property
    def length(self) -> int:
        return sum(len(piece) for piece in self.pieces)

    def close(self) -> None:
        """Release the files this reply holds open, when it will not be sent."""
        for piece in self.pieces:
            if isinstance(piece, FileSlice):
                os.close(piece.fd)
        self.body = b""


class Refusal(Exception):
    """A request we answer with an error status instead of a file."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


def respond(request: Request, config: Config, cache: FileCache | None = None) -> Reply:
    """The whole answer to one request, as a Reply; `cache` keeps hot small files."""
    try:
        reply = _respond(request, config, cache)
    except Refusal as refusal:
        reply = error_reply(refusal.status, refusal.sentence)
    if reply.status == 404 and request.method in ("GET", "HEAD"):
        reply = _custom_404(config) or reply
    _add_configured_headers(reply, config)
    if request.method == "HEAD":
        reply.close()  # HEAD repeats GET's headers, Content-Length included, but no body
    return reply


def _respond(request: Request, config: Config, cache: FileCache | None) -> Reply:
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
        return _options(request, config)
    if method not in ("GET", "HEAD"):
        return _method_refusal(method)
    path, query = parse_target(request.target)
    if path == echo.PATH and _echo_enabled(config):
        return _echo(request)
    segments = split_path(path)
    slash = path.endswith("/")
    key = (tuple(segments), slash)
    hit = cache.get(key) if cache is not None and "range" not in request.headers else None
    if hit is not None:
        return _cached_reply(request, hit)
    try:
        reply = _serve(request, segments, slash, query, config)
    except Refusal as refusal:
        if refusal.status == 404 and _wants_app_shell(request, segments, config):
            # /index.html itself: with none, a folder listing is no app shell; keep the 404.
            reply = _serve(request, ["index.html"], False, "", config)
            _add_vary(reply, "Accept")
            reply.origin = None  # the same URL may 404 for another Accept: never cache it
            return reply
        raise
    if cache is not None and reply.origin is not None:
        cache.put(key, reply.origin)
    return reply


def _echo_enabled(config: Config) -> bool:
    # Only on loopback: behind a network bind, headers a proxy adds would be shown to anyone.
    return config.echo and config.loopback


def _echo(request: Request) -> Reply:
    """The built-in echo: this request's own head as plain text, secrets redacted."""
    # HEAD gets the Content-Length a GET of the same request would (RFC 9110 §9.3.2).
    method = "GET" if request.method == "HEAD" else request.method
    body = echo.echo_body(method, request.target, request.http_version, request.raw_headers)
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),  # every request differs: never keep one
    ]
    return Reply(200, headers, body)


def _method_refusal(method: str) -> Reply:
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
    return bool(text) and all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in text)


def _wants_app_shell(request: Request, segments: list[str], config: Config) -> bool:
    """--spa: a browser navigating to a client-side route (no file, no extension)."""
    if not config.spa or (segments and "." in segments[-1]):
        return False
    return negotiate.accepts_html(request.headers.get("accept"))


def _custom_404(config: Config) -> Reply | None:
    """The site's own 404.html, if it has one, as the body of every 404."""
    try:
        fd, info, _ = _open_inside(["404.html"], config)
    except Refusal:
        return None
    if not stat.S_ISREG(info.st_mode):
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


def _add_configured_headers(reply: Reply, config: Config) -> None:
    """--header, and --cors (never with credentials: a wildcard must not carry cookies)."""
    reply.headers.extend(config.extra_headers)
    if config.cors_origin is None:
        return
    reply.headers.append(("Access-Control-Allow-Origin", config.cors_origin))
    reply.headers.append(("Access-Control-Expose-Headers", _CORS_EXPOSE))
    if config.cors_origin != "*":
        _add_vary(reply, "Origin")  # a cache must not hand this answer to another origin


def _add_vary(reply: Reply, name: str) -> None:
    """Add a name to the one Vary header, creating it if needed."""
    for i, (header, value) in enumerate(reply.headers):
        if header == "Vary":
            if name not in (v.strip() for v in value.split(",")):
                reply.headers[i] = (header, f"{value}, {name}")
            return
    reply.headers.append(("Vary", name))


# --- the Host check ------------------------------------------------------------------------


def host_allowed(request: Request, config: Config) -> bool:
    """Whether a loopback-bound server may answer this Host (DNS-rebinding defence).

    A page on evil.example can point its own name at 127.0.0.1 and then read our answers;
    the one thing it cannot change is the Host header its browser sends.
    """
    if config.unix is not None:
        # Unlike SPEC §2's first draft, no check on a Unix socket: a browser cannot reach one
        # (rebinding needs TCP), only local processes allowed to open the socket file can,
        # and `curl --unix-socket PATH http://x/` should just work whatever name it sends.
        return True
    if not config.loopback:
        return True
    names = [request.headers.get("host", "")]
    absolute = _absolute_form(request.target)
    if absolute is not None:
        names.append(absolute[0])  # absolute-form carries a host name too
    return all(_allowed_name(name, config) for name in names if name)


def _allowed_name(host: str, config: Config) -> bool:
    name = host.lower()
    if not name.startswith("["):
        name = name.rpartition(":")[0] or name  # drop the port
    elif "]:" in name:
        name = name[: name.index("]:") + 1]
    allowed = (*LOOPBACK_HOSTS, *(h.lower() for h in config.allow_hosts))
    return name in allowed or name.endswith(".localhost") or _loopback_literal(name)


def _loopback_literal(name: str) -> bool:
    """127.0.0.2 or [::1] are this machine too (--bind 127.0.0.2 prints such a URL)."""
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


# --- from the target to path segments (pure) -----------------------------------------------


def _absolute_form(target: str) -> tuple[str, str] | None:
    """(authority, origin-form rest) of an `http://host/path?q` target; None for other forms."""
    scheme, separator, rest = target.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return None
    # The authority ends at the first /, ? or #: `http://host?x` has the path "/".
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:end], "/" + rest[end:].removeprefix("/")


def parse_target(target: str) -> tuple[str, str]:
    """The percent-decoded path and the raw query of an origin- or absolute-form target."""
    absolute = _absolute_form(target)
    if absolute is not None:
        target = absolute[1]
    elif not target.startswith("/"):
        raise Refusal(400, "The request target must be a path starting with /.")
    raw_path, _, query = target.partition("#")[0].partition("?")
    try:
        # Decode exactly once: a second decode is how %252e%252e becomes .. (CVE-2001-0333).
        path = unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "The path is not valid UTF-8.") from None
    # C0, DEL and C1 (U+0080..U+009F: U+009B is a one-character terminal escape).
    if any(c < " " or c == "\\" or "\x7f" <= c <= "\x9f" for c in path):
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


def _serve(request: Request, segments: list[str], slash: bool, query: str, config: Config) -> Reply:
    _check_hidden(segments, config)
    fd, info, real = _open_inside(segments, config)
    if stat.S_ISREG(info.st_mode) and slash:
        os.close(fd)  # `/file.txt/` names a folder that is not there (ENOTDIR), as in nginx
        raise Refusal(404, "No such folder.")
    path = os.path.join(str(config.root), *segments)
    if stat.S_ISREG(info.st_mode):
        return _file_reply(request, _File(fd, info, real, path), config)
    os.close(fd)  # a directory: only its name mattered
    if not slash and segments:
        # CPython gh-87389: build the Location from the normalised path, never from the
        # raw target, or `//evil.example/..` redirects a browser off-site.
        return _redirect(_url_path(segments, query, slash=True))
    for position, name in enumerate(config.index_files):
        try:
            fd, info, index = _open_inside([*segments, name], config)
        except Refusal:
            continue
        if stat.S_ISREG(info.st_mode):
            reply = _file_reply(request, _File(fd, info, index, os.path.join(path, name)), config)
            # A cached index.htm would hide an index.html created later: watch for it.
            earlier = tuple(os.path.join(path, n) for n in config.index_files[:position])
            if reply.origin is not None and earlier:
                reply.origin = replace(reply.origin, shadows=reply.origin.shadows + earlier)
            return reply
        os.close(fd)
    if not config.listing:
        raise Refusal(404, "This folder has no index file.")
    return _listing(request, segments, real, config)


def _check_hidden(segments: list[str], config: Config) -> None:
    for position, segment in enumerate(segments):
        if not _visible(segment, config, top=position == 0):
            raise Refusal(404, "No such file.")


def _visible(name: str, config: Config, top: bool) -> bool:
    """Dotfiles (.env, .htpasswd) are secrets more often than content; .git always is."""
    if name == ".git":
        return False
    well_known = top and name == ".well-known"  # RFC 8615
    return not name.startswith(".") or config.dotfiles or well_known


def _open_inside(segments: list[str], config: Config) -> tuple[int, os.stat_result, str]:
    """Open what the segments name, only if it really lies inside the root; return its
    descriptor, its fstat() and its real path."""
    root = str(config.root)
    candidate = os.path.join(root, *segments)  # segments hold no '/' and no NUL
    try:
        real = os.path.realpath(candidate)
        if not config.follow_symlinks and not _inside(root, real):
            raise Refusal(404, "No such file.")
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
        if config.follow_symlinks:
            fd = os.open(candidate, _OPEN_FLAGS)
        else:
            # O_NOFOLLOW: `real` has no links left, so one appearing since realpath() is a
            # swap in progress; refuse it rather than follow it out of the root.
            fd = os.open(real, _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise _refusal_for(error) from None
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        os.close(fd)  # FIFO, socket or device: never served
        raise Refusal(404, "No such file.")
    return fd, info, real


def _inside(root: str, real: str) -> bool:
    """Whether `real` lies in `root`, compared by whole components, and not inside .git."""
    # By components: /www-secret starts with the string /www but is not inside it.
    prefix = root if root.endswith(os.sep) else root + os.sep
    if real != root and not real.startswith(prefix):
        return False
    return f"{os.sep}.git{os.sep}" not in f"{os.sep}{real[len(prefix) :]}{os.sep}"  # nor via a link


def _refusal_for(error: OSError) -> Refusal:
    """An OS error as the status a client should see: never a 500."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refusal(403, "This file is not readable by the server.")
    if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        # Out of descriptors is our trouble, and passing: a 404 would tell the client, and
        # any cache on the way, that a file that exists is gone (issue 5).
        return Refusal(503, "The server is too busy to open the file; try again shortly.")
    return Refusal(404, "No such file.")


# --- a file's representation: coding, validators, conditions, ranges -------------------------


@dataclass
class _File:
    """An open regular file and the validators its headers will carry."""

    fd: int
    info: os.stat_result
    real: str  # where it really is: precompressed siblings are looked for beside it
    path: str  # the path the URL names (a link, perhaps): the cache re-checks this one
    coding: str | None = None  # "br" or "gzip" when a precompressed sibling stands in

    @property
    def size(self) -> int:
        return self.info.st_size

    @property
    def name(self) -> str:
        return os.path.basename(self.path)  # the name asked for decides the Content-Type

    @property
    def etag(self) -> str:
        return _etag(self.info.st_size, self.info.st_mtime_ns, self.coding)

    @property
    def modified(self) -> int:
        return self.info.st_mtime_ns // 1_000_000_000  # HTTP dates have whole seconds


def _etag(size: int, mtime_ns: int, coding: str | None) -> str:
    # Strong, and the same on every host serving the same file version (SPEC §5);
    # each coding is a different representation, so it has its own tag.
    suffix = f"-{coding}" if coding else ""
    return f'"{size:x}-{mtime_ns:x}{suffix}"'


def _file_reply(request: Request, original: _File, config: Config) -> Reply:
    file, has_siblings = _choose_coding(request, original, config)
    reply = _representation_reply(request, file, config, cacheable=not has_siblings)
    if has_siblings:
        _add_vary(reply, "Accept-Encoding")  # on every answer for it: 200, 206, 304, 412, 416
    return reply


def _representation_reply(request: Request, file: _File, config: Config, cacheable: bool) -> Reply:
    headers = _file_headers(file, config)
    decision = conditional.evaluate(request.method, request.headers, file.etag, file.modified)
    if decision is not None:
        os.close(file.fd)
        return _unchanged(headers) if decision == 304 else _precondition_failed()
    if request.method == "GET" and "range" in request.headers:
        return _ranged(request, file, headers, config)
    return _whole(file, headers, config, cacheable)


def _choose_coding(request: Request, file: _File, config: Config) -> tuple[_File, bool]:
    """The file itself, or its .br/.gz sibling when the client accepts that coding."""
    accept = request.headers.get("accept-encoding")
    has_siblings = False
    chosen = file
    for coding, suffix in _CODINGS:
        sibling = _sibling(file, suffix, config)
        if sibling is None:
            continue
        has_siblings = True
        if chosen is file and negotiate.accepts_coding(accept, coding):
            chosen = _File(sibling[0], sibling[1], file.real, file.path, coding)
        else:
            os.close(sibling[0])
    if chosen is not file:
        os.close(file.fd)
    return chosen, has_siblings


def _sibling(file: _File, suffix: str, config: Config) -> tuple[int, os.stat_result] | None:
    """An up-to-date precompressed sibling (`name.br`), opened; None if there is none."""
    # O_NOFOLLOW: the sibling stands in the original's real folder, so refusing links
    # keeps it inside the root without another realpath().
    flags = _OPEN_FLAGS | (0 if config.follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(file.real + suffix, flags)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_mtime_ns < file.info.st_mtime_ns:
        os.close(fd)  # a stale sibling would serve yesterday's bytes
        return None
    return fd, info


def _file_headers(file: _File, config: Config) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", content_type(file.name)),
        ("Content-Length", str(file.size)),
        ("Last-Modified", format_http_date(file.modified)),
        ("ETag", file.etag),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", _cache_control(config)),
    ]
    if file.coding:
        headers.insert(1, ("Content-Encoding", file.coding))
    return headers


def _cache_control(config: Config) -> str:
    if config.max_age is not None:
        return f"public, max-age={config.max_age}"
    # Browsers revalidate every time: an edit shows on reload, a hit costs a 304.
    return "no-cache"


def _unchanged(headers: list[tuple[str, str]]) -> Reply:
    """304: the validators and caching headers of the 200, no body (RFC 9110 §15.4.5)."""
    kept = ("ETag", "Last-Modified", "Cache-Control", "Vary")
    return Reply(304, [(name, value) for name, value in headers if name in kept])


def _precondition_failed() -> Reply:
    return error_reply(412, "The file has changed since the version you named.")


def _whole(
    file: _File, headers: list[tuple[str, str]], config: Config, cacheable: bool = False
) -> Reply:
    if file.size > config.small_file_bytes:
        return Reply(200, headers, FileSlice(file.fd, 0, file.size))
    with os.fdopen(file.fd, "rb") as opened:
        body = opened.read(file.size)  # a file that grew is cut at the size we promise
    if len(body) != file.size:  # it shrank between fstat() and read(): never cache that
        headers = _replace(headers, "Content-Length", str(len(body)))
        return Reply(200, headers, body)
    reply = Reply(200, headers, body)
    if cacheable:
        siblings = tuple(file.real + suffix for _, suffix in _CODINGS)
        reply.origin = Cached(file.path, Identity.of(file.info), siblings, tuple(headers), body)
    return reply


def _cached_reply(request: Request, entry: Cached) -> Reply:
    """A hot small file from the cache: the same answer the disk would give, fewer calls."""
    identity = entry.identity
    etag = _etag(identity.size, identity.mtime_ns, None)
    modified = identity.mtime_ns // 1_000_000_000
    headers = list(entry.headers)
    decision = conditional.evaluate(request.method, request.headers, etag, modified)
    if decision is not None:
        return _unchanged(headers) if decision == 304 else _precondition_failed()
    return Reply(200, headers, entry.body)


def _ranged(request: Request, file: _File, headers: list[tuple[str, str]], config: Config) -> Reply:
    """206 with one range or multipart/byteranges, 416, or the whole file (RFC 9110 §14)."""
    if_range = request.headers.get("if-range")
    if if_range is not None and not conditional.if_range_holds(if_range, file.etag, file.modified):
        return _whole(file, headers, config)  # it changed: a resume must start over
    selected = ranges.select_ranges(request.headers["range"], file.size)
    if selected is None:
        return _whole(file, headers, config)  # invalid, or not worth it: ignore the Range
    if not selected:
        os.close(file.fd)
        reply = error_reply(416, "No part of the requested range is in the file.")
        reply.headers.append(("Content-Range", ranges.unsatisfied_range(file.size)))
        return reply
    if len(selected) == 1:
        return _one_range(file, headers, selected[0])
    return _multipart(file, headers, selected)


def _one_range(file: _File, headers: list[tuple[str, str]], part: ranges.ByteRange) -> Reply:
    headers = _replace(headers, "Content-Length", str(part.length))
    headers.append(("Content-Range", ranges.content_range(part, file.size)))
    return Reply(206, headers, FileSlice(file.fd, part.start, part.length))


def _multipart(
    file: _File, headers: list[tuple[str, str]], selected: list[ranges.ByteRange]
) -> Reply:
    boundary = secrets.token_hex(16)
    media_type = content_type(file.name)
    layout = ranges.multipart_layout(selected, file.size, media_type, boundary)
    # Each part is its own slice with its own descriptor, so the outbox can close each
    # one when it is sent; the bytes still go out through sendfile.
    body: list[bytes | FileSlice] = []
    try:
        for piece in layout:
            if isinstance(piece, bytes):
                body.append(piece)
            else:
                body.append(FileSlice(os.dup(file.fd), piece.start, piece.length))
    except OSError as error:  # out of descriptors: release what we took, answer 503
        Reply(206, [], body).close()
        raise _refusal_for(error) from None
    finally:
        os.close(file.fd)
    headers = _replace(headers, "Content-Type", f"multipart/byteranges; boundary={boundary}")
    headers = _replace(headers, "Content-Length", str(ranges.layout_length(layout)))
    return Reply(206, headers, body)


def _replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in headers]


# --- folders without an index ---------------------------------------------------------------


def _listing(request: Request, segments: list[str], real: str, config: Config) -> Reply:
    entries = listing.sort_entries(_scan(real, config, top=not segments))
    url_path = "/" + "".join(s + "/" for s in segments)
    if negotiate.prefers_json(request.headers.get("accept")):
        body, media_type = listing.json_listing(url_path, entries), "application/json"
    else:
        body, media_type = listing.html_listing(url_path, entries), "text/html"
    headers = [
        ("Content-Type", media_type + "; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
        ("Vary", "Accept"),  # the same URL answers HTML or JSON
    ]
    return Reply(200, headers, body)


def _scan(folder: str, config: Config, top: bool) -> list[listing.Entry]:
    """The folder's entries a client may follow: never a hidden or escaping one."""
    try:
        with os.scandir(folder) as found:
            entries = [_entry(item, config, top) for item in found]
    except OSError as error:
        raise _refusal_for(error) from None
    return [entry for entry in entries if entry is not None]


def _entry(item: os.DirEntry[str], config: Config, top: bool) -> listing.Entry | None:
    if not _visible(item.name, config, top):
        return None
    try:
        escapes = item.is_symlink() and not _inside(str(config.root), os.path.realpath(item.path))
        if escapes and not config.follow_symlinks:
            return None  # listing it would only show a link that 404s
        info = item.stat()
    except OSError:
        return None  # a broken link, or gone since scandir() saw it
    if stat.S_ISDIR(info.st_mode):
        return listing.Entry(item.name, True, 0, info.st_mtime)
    if stat.S_ISREG(info.st_mode):
        return listing.Entry(item.name, False, info.st_size, info.st_mtime)
    return None  # FIFOs, sockets and devices are never served, so never listed


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
