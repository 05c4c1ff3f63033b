"""Which file a request may see: target -> path segments -> a file opened inside the root.

This is the security core, and it is pure in the way that matters: no sockets and no h11, only
the request's plain values and the filesystem. Every step refuses with an exact status:
400 for a target that is not a valid path, 404 for anything outside the root, hidden or absent,
403 for what the server may not read.
"""

from __future__ import annotations

import functools
import html
import os
import re
import stat
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from . import files, listing
from .cache import FileCache
from .checks import absolute_form
from .config import Config
from .message import Refusal, Reply, Request, error_reply, refusal_for
from .portable import O_NOFOLLOW, OPEN_FLAGS

__all__ = ["parse_target", "serve", "split_path", "visible"]

# RFC 3986 §2.1: a `%` starts a percent-encoded octet, so two hex digits must follow it.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# C0, DEL and C1 (U+0080..U+009F: U+009B is a one-character terminal escape), and the
# backslash that Windows and some proxies read as a separator.
_FORBIDDEN = re.compile(r"[\x00-\x1f\\\x7f-\x9f]")
# Characters a path segment may keep unescaped in a Location header (RFC 3986 pchar).
_PCHAR_SAFE = "!$&'()*+,;=:@~"
_QUERY_SAFE = _PCHAR_SAFE + "/?%"


def serve(request: Request, path: str, query: str, config: Config, cache: FileCache) -> Reply:
    """The answer to a GET or HEAD of a decoded path: a file, a folder's index or listing,
    or a redirect that adds a folder's slash."""
    if path.count("/") > config.max_segments:
        raise Refusal(414, "The request path has too many segments.")
    segments, folder = split_path(path)
    key = (tuple(segments), folder)
    if "range" not in request.headers:
        hit = cache.get(key)
        if hit is not None:
            return files.cached_reply(request, hit)
    reply = _serve(request, segments, folder, query, config, cache)
    if reply.origin is not None:
        cache.put(key, reply.origin)
    return reply


# --- from the target to path segments (pure) -----------------------------------------------


def parse_target(target: str) -> tuple[str, str]:
    """The percent-decoded path and the raw query of an origin- or absolute-form target."""
    if not target.startswith("/"):
        absolute = absolute_form(target)
        if absolute is None:
            raise Refusal(400, "The request target must be a path starting with /.")
        target = absolute[1]
    raw_path, _, query = target.partition("#")[0].partition("?")
    if "%" in raw_path:
        if _BAD_PERCENT.search(raw_path):
            raise Refusal(400, "A % in the path is not followed by two hex digits.")
        # Decode exactly once: a second decode is how %252e%252e becomes .. (CVE-2001-0333).
        raw = unquote_to_bytes(raw_path.encode("latin-1"))
    elif raw_path.isascii():
        raw = b""  # nothing to decode: the common case costs no copy
    else:
        raw = raw_path.encode("latin-1")
    try:
        path = raw.decode("utf-8") if raw else raw_path
    except UnicodeDecodeError:
        raise Refusal(400, "The path is not valid UTF-8.") from None
    if _FORBIDDEN.search(path):
        raise Refusal(400, "The path holds a control character or a backslash.")
    return path, query


def split_path(path: str) -> tuple[list[str], bool]:
    """The path's segments with `.` and `..` removed (RFC 3986 §5.2.4), and whether it names
    a folder: `/a/`, `/a/.` and `/b/..` all do. Climbing above the root is a 404."""
    segments: list[str] = []
    names = path.split("/")
    for segment in names:
        if segment == "..":
            if not segments:
                raise Refusal(404, "There is nothing above the root.")
            segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    return segments, names[-1] in ("", ".", "..")


def _url_path(segments: list[str], query: str) -> str:
    """A folder's path for a Location header: exactly one leading slash, so never
    `//evil.example`, and the query kept."""
    path = "/" + "".join(quote(s, safe=_PCHAR_SAFE) + "/" for s in segments)
    if query:
        path += "?" + quote_from_bytes(query.encode("latin-1"), safe=_QUERY_SAFE)
    return path


# --- from segments to a file ---------------------------------------------------------------


def _serve(
    request: Request,
    segments: list[str],
    folder: bool,
    query: str,
    config: Config,
    cache: FileCache,
) -> Reply:
    for position, segment in enumerate(segments):
        if not visible(segment, config, top=position == 0):
            raise Refusal(404, "No such file.")
    fd, info, real = _open_inside(segments, config)
    path = os.path.join(config.root, *segments)
    if stat.S_ISREG(info.st_mode):
        if folder:
            os.close(fd)  # `/file.txt/` names a folder that is not there (ENOTDIR), as in nginx
            raise Refusal(404, "No such folder.")
        return files.file_reply(request, files.OpenFile(fd, info, real, path), config)
    os.close(fd)  # a directory: only its name mattered
    if not folder:
        # CPython gh-87389: build the Location from the normalised path, never from the
        # raw target, or `//evil.example/..` redirects a browser off-site.
        return _redirect(_url_path(segments, query))
    return _folder(request, segments, real, config, cache)


def _folder(
    request: Request, segments: list[str], real: str, config: Config, cache: FileCache
) -> Reply:
    """A folder's first index file, else its listing."""
    path = os.path.join(config.root, *segments)
    for position, name in enumerate(config.index_files):
        try:
            fd, info, index = _open_inside([*segments, name], config)
        except Refusal:
            continue
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            continue
        reply = files.file_reply(request, files.OpenFile(fd, info, index, f"{path}/{name}"), config)
        # A cached index.htm would hide an index.html created later: watch for it.
        earlier = tuple(f"{path}/{n}" for n in config.index_files[:position])
        files.shadow(reply, earlier)
        return reply
    if not config.listing:
        raise Refusal(404, "This folder has no index file.")
    url_path = "/" + "".join(s + "/" for s in segments)
    keep = functools.partial(_listable, config=config)
    return listing.listing_reply(request, url_path, real, keep, cache)


def visible(name: str, config: Config, top: bool) -> bool:
    """Dotfiles (.env, .htpasswd) are secrets more often than content; .git always is."""
    if name == ".git":
        return False
    well_known = top and name == ".well-known"  # RFC 8615
    return not name.startswith(".") or config.dotfiles or well_known


def _listable(entry: os.DirEntry[str], config: Config) -> bool:
    """Whether a folder's listing may show an entry: never a hidden or escaping one."""
    top = os.path.dirname(entry.path) == str(config.root)
    if not visible(entry.name, config, top):
        return False
    if config.follow_symlinks or not entry.is_symlink():
        return True
    return _inside(os.path.realpath(entry.path), config)  # else a link that 404s


def _open_inside(segments: list[str], config: Config) -> tuple[int, os.stat_result, str]:
    """Open what the segments name, only if it really lies inside the root; return its
    descriptor, its fstat() and its real path."""
    root = str(config.root)
    candidate = os.path.join(root, *segments)  # segments hold no '/' and no NUL
    try:
        # strict: stop at the first missing component, so a path of a thousand segments
        # that do not exist costs one lstat(), not a thousand.
        real = os.path.realpath(candidate, strict=True)
        if config.follow_symlinks:
            fd = os.open(candidate, OPEN_FLAGS)
        elif _inside(real, config):
            # O_NOFOLLOW: `real` has no links left, so one appearing since realpath() is a
            # swap in progress; refuse it rather than follow it out of the root.
            fd = os.open(real, OPEN_FLAGS | O_NOFOLLOW)
        else:
            raise Refusal(404, "No such file.")
    except OSError as error:
        raise refusal_for(error) from None
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        os.close(fd)  # FIFO, socket or device: never served
        raise Refusal(404, "No such file.")
    return fd, info, real


def _inside(real: str, config: Config) -> bool:
    """Whether `real` lies in the root, compared by whole components, and is visible there:
    a link to .env or into .git is as hidden as the file itself (a .well-known is public
    wherever the link to it leads)."""
    root = str(config.root)
    # By components: /www-secret starts with the string /www but is not inside it.
    prefix = root if root.endswith(os.sep) else root + os.sep
    if real != root and not real.startswith(prefix):
        return False
    names = real[len(prefix) :].split(os.sep) if real != root else []
    return all(visible(name, config, top=True) for name in names)


def _redirect(location: str) -> Reply:
    link = html.escape(location)
    reply = error_reply(301, f'It is at <a href="{link}">{link}</a>.')
    reply.headers.append(("Location", location))
    return reply
