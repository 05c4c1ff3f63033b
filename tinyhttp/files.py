"""Which bytes of a file go out: its coding, validators, preconditions, ranges, small reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from . import codings, conditional, ranges
from .cache import Cached, Identity
from .config import Config
from .httpdate import format_http_date
from .message import FileSlice, Reply, Request, add_vary, error_reply, replace_header
from .mime import content_type

__all__ = ["OpenFile", "cached_reply", "etag", "file_reply", "shadow"]


@dataclass
class OpenFile:
    """An open regular file and the validators its headers will carry."""

    fd: int
    info: os.stat_result
    real: str  # where it really is: precompressed siblings are looked for beside it
    path: str  # the path the URL names (a link, perhaps): the cache re-checks this one
    coding: str | None = None  # "br" or "gzip" when a precompressed sibling stands in

    @property
    def etag(self) -> str:
        return etag(self.info.st_size, self.info.st_mtime_ns, self.coding)

    @property
    def modified(self) -> int:
        return self.info.st_mtime_ns // 1_000_000_000  # HTTP dates have whole seconds


def etag(size: int, mtime_ns: int, coding: str | None) -> str:
    """A strong tag, the same on every host serving the same file version; each coding is
    a different representation, so it has its own tag."""
    suffix = f"-{coding}" if coding else ""
    return f'"{size:x}-{mtime_ns:x}{suffix}"'


def file_reply(request: Request, original: OpenFile, config: Config) -> Reply:
    """The answer for an open file: 200, 206, 304, 412 or 416, with the file's headers."""
    accept = request.headers.get("accept-encoding")
    coded, has_siblings = codings.precompressed(
        original.real, original.info, accept, config.follow_symlinks
    )
    file = original
    if coded is not None:
        os.close(original.fd)
        file = OpenFile(coded[0], coded[1], original.real, original.path, coded[2])
    headers = _file_headers(file, original.path, config)
    decision = conditional.evaluate(request.method, request.headers, file.etag, file.modified)
    if decision is not None:
        os.close(file.fd)
        reply = _unchanged(headers) if decision == 304 else _precondition_failed()
    elif request.method == "GET" and "range" in request.headers:
        reply = _ranged(request, file, headers, config)
    else:
        reply = _whole(file, headers, config, cacheable=not has_siblings)
    if has_siblings:
        add_vary(reply, "Accept-Encoding")  # on every answer for it: 200, 206, 304, 412, 416
    return reply


def cached_reply(request: Request, entry: Cached) -> Reply:
    """A hot small file from the cache: the same answer the disk would give, fewer calls."""
    if not conditional.present(request.headers):
        return Reply(200, list(entry.headers), entry.body)
    identity = entry.identity
    tag = etag(identity.size, identity.mtime_ns, None)
    modified = identity.mtime_ns // 1_000_000_000
    decision = conditional.evaluate(request.method, request.headers, tag, modified)
    if decision is not None:
        return _unchanged(list(entry.headers)) if decision == 304 else _precondition_failed()
    return Reply(200, list(entry.headers), entry.body)


def shadow(reply: Reply, paths: tuple[str, ...]) -> None:
    """Mark a cacheable reply stale once any of `paths` appears (an earlier index file)."""
    if reply.origin is not None and paths:
        reply.origin = replace(reply.origin, shadows=reply.origin.shadows + paths)


# --- the representation: which coding, which headers ---------------------------------------


def _file_headers(file: OpenFile, path: str, config: Config) -> list[tuple[str, str]]:
    # The name asked for decides the Content-Type, not the sibling's .gz.
    headers = [
        ("Content-Type", content_type(os.path.basename(path))),
        ("Content-Length", str(file.info.st_size)),
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


# --- the bytes: whole, one range, several --------------------------------------------------


def _whole(
    file: OpenFile, headers: list[tuple[str, str]], config: Config, cacheable: bool = False
) -> Reply:
    size = file.info.st_size
    if size > config.small_file_bytes:
        return Reply(200, headers, FileSlice(file.fd, 0, size))
    with os.fdopen(file.fd, "rb") as opened:
        body = opened.read(size)  # a file that grew is cut at the size we promise
    if len(body) != size:  # it shrank between fstat() and read(): never cache that
        return Reply(200, replace_header(headers, "Content-Length", str(len(body))), body)
    reply = Reply(200, headers, body)
    if cacheable:
        siblings = tuple(file.real + suffix for _, suffix in codings.CODINGS)
        reply.origin = Cached(file.path, Identity.of(file.info), siblings, tuple(headers), body)
    return reply


def _ranged(
    request: Request, file: OpenFile, headers: list[tuple[str, str]], config: Config
) -> Reply:
    """206 with one range or multipart/byteranges, 416, or the whole file (RFC 9110 §14)."""
    if_range = request.headers.get("if-range")
    if if_range is not None and not conditional.if_range_holds(if_range, file.etag, file.modified):
        return _whole(file, headers, config)  # it changed: a resume must start over
    size = file.info.st_size
    selected = ranges.select_ranges(request.headers["range"], size)
    if selected is None:
        return _whole(file, headers, config)  # invalid, or not worth it: ignore the Range
    if not selected:
        os.close(file.fd)
        reply = error_reply(416, "No part of the requested range is in the file.")
        reply.headers.append(("Content-Range", ranges.unsatisfied_range(size)))
        return reply
    return ranges.partial_reply(file.fd, size, headers, selected)
