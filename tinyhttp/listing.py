"""Folders without an index: their entries scanned, listed as HTML or JSON, and remembered."""

from __future__ import annotations

import html
import json
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

from . import negotiate, pages
from .cache import Cached, FileCache, Identity
from .message import Reply, Request, refusal_for

__all__ = ["Entry", "html_listing", "json_listing", "listing_reply", "sort_entries"]

# A listing shows each file's size and time, which change without touching the folder's
# own mtime; so a rendered listing is kept this long at most, and a folder of 10,000
# files costs one scan per this many seconds however often it is asked for.
KEEP_SECONDS = 2.0

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
# Shown dates have a four-digit year; a file touched to year 10000 must not crash the listing.
_LATEST = 253402300799  # 9999-12-31 23:59:59 UTC
_NO_SIZE = "\u2014"  # an em dash: a folder's size on disk tells the reader nothing

# What a listing adds to the shared look (pages.STYLE): the trail of folders above the table,
# and a table whose sizes line up on the right and whose dates line up digit under digit.
_STYLE = """\
.crumbs { display: flex; flex-wrap: wrap; margin: 0; padding: 0; list-style: none;
  color: var(--muted); font-size: 0.93rem; overflow-wrap: anywhere; }
.crumbs li::after { content: "\\203A"; margin: 0 0.45rem; }
.crumbs [aria-current] { color: var(--fg); font-weight: 600; }
table { width: 100%; border-collapse: collapse; margin: 1rem 0 1.5rem; font-size: 0.95rem; }
th, td { padding: 0.45rem 0.6rem; text-align: left; border-bottom: 1px solid var(--border); }
thead th { border-bottom-width: 2px; font-weight: 650; }
th:first-child { width: 100%; } /* the names take the room; sizes and dates only need theirs */
td:first-child { overflow-wrap: anywhere; }
td a { text-decoration: none; }
td a:hover, td a:focus-visible { text-decoration: underline; }
.dir a { font-weight: 600; }
.size, .modified { white-space: nowrap; font-variant-numeric: tabular-nums; }
.size { text-align: right; }
tbody tr:hover { background: var(--soft); }
@media (max-width: 30rem) { table { font-size: 0.9rem; } th, td { padding: 0.45rem 0.25rem; } }"""


@dataclass(frozen=True)
class Entry:
    """One item of a folder, as the caller found it (name exactly as os.listdir gives it)."""

    name: str
    is_dir: bool
    size: int
    mtime: float


def listing_reply(
    request: Request,
    url_path: str,
    folder: str,
    keep: Callable[[os.DirEntry[str]], bool],
    cache: FileCache,
) -> Reply:
    """The listing of `folder` (a real path) as HTML, or JSON when the client prefers it;
    `keep` says which entries a client may see."""
    as_json = negotiate.prefers_json(request.headers.get("accept"))
    key = ("listing", url_path, folder, as_json)  # one folder may be reached by two paths
    hit = cache.get(key)
    if hit is None:
        try:
            identity = Identity.of(os.stat(folder))  # before the scan: a change during it shows
            entries = sort_entries(scan(folder, keep))
        except OSError as error:
            raise refusal_for(error) from None
        body = json_listing(url_path, entries) if as_json else html_listing(url_path, entries)
        media_type = "application/json" if as_json else "text/html"
        headers = (
            ("Content-Type", media_type + "; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Vary", "Accept"),  # the same URL answers HTML or JSON
        )
        hit = Cached(folder, identity, (), headers, body, time.monotonic() + KEEP_SECONDS)
        cache.put(key, hit)
    return Reply(200, list(hit.headers), hit.body)


def scan(folder: str, keep: Callable[[os.DirEntry[str]], bool]) -> list[Entry]:
    """The folder's regular files and subfolders that `keep` lets through."""
    with os.scandir(folder) as found:
        return [entry for item in found if keep(item) and (entry := _entry(item)) is not None]


def _entry(item: os.DirEntry[str]) -> Entry | None:
    try:
        info = item.stat()
    except OSError:
        return None  # a broken link, or gone since scandir() saw it
    if stat.S_ISDIR(info.st_mode):
        return Entry(item.name, True, 0, info.st_mtime)
    if stat.S_ISREG(info.st_mode):
        return Entry(item.name, False, info.st_size, info.st_mtime)
    return None  # FIFOs, sockets and devices are never served, so never listed


def sort_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Folders first, then by name ignoring case; the exact name breaks ties, so order is stable."""
    return sorted(entries, key=lambda entry: (not entry.is_dir, entry.name.casefold(), entry.name))


def html_listing(url_path: str, entries: list[Entry]) -> bytes:
    """A small UTF-8 HTML5 page listing the entries in the order given (see sort_entries).

    `url_path` is the decoded path of the folder; it ends with `/`, which the relative links
    (`./name`, `../`) rely on.
    """
    title = html.escape(f"Index of {_display_name(url_path)}")
    rows = [] if url_path == "/" else [_row("../", "../", _NO_SIZE, "", folder=True)]
    rows += [_entry_row(entry) for entry in entries]
    lines = [
        _breadcrumb(url_path),
        f"<h1>{title}</h1>",
        "<table>",
        '<thead><tr><th>Name</th><th class="size">Size</th>'
        '<th class="modified">Modified (UTC)</th></tr></thead>',
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
    ]
    return pages.page(title, "\n".join(lines), _STYLE)


def _breadcrumb(url_path: str) -> str:
    """The trail of folders from the root down to this one: each above it a link, it not."""
    crumbs = [("/", "/")]
    for name in url_path.split("/"):
        if name:  # quoted and shown exactly as an entry's name would be
            href = crumbs[-1][0] + quote_from_bytes(_name_bytes(name), safe="") + "/"
            crumbs.append((href, html.escape(_display_name(name))))
    # Absolute links, built from the path as served: `/files//sub/` gets this same listing,
    # and `../../` from there would not reach the root.
    items = [f'<li><a href="{html.escape(href)}">{label}</a></li>' for href, label in crumbs[:-1]]
    items.append(f'<li aria-current="page">{crumbs[-1][1]}</li>')
    return '<nav aria-label="Folder path"><ol class="crumbs">' + "".join(items) + "</ol></nav>"


def json_listing(url_path: str, entries: list[Entry]) -> bytes:
    """The same listing as compact UTF-8 JSON, one object and a newline."""
    document = {
        "path": url_path,
        "entries": [
            {
                "name": _display_name(entry.name),
                "type": "directory" if entry.is_dir else "file",
                "size": entry.size,
                "modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", _utc(entry.mtime)),  # RFC 3339
                "href": _href(entry),
            }
            for entry in entries
        ],
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def _entry_row(entry: Entry) -> str:
    label = _display_name(entry.name) + ("/" if entry.is_dir else "")
    size = _NO_SIZE if entry.is_dir else _human_size(entry.size)
    moment = _utc(entry.mtime)
    modified = (
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)}">'
        f"{time.strftime('%Y-%m-%d %H:%M', moment)}</time>"
    )
    return _row(_href(entry), html.escape(label), size, modified, folder=entry.is_dir)


def _row(href: str, label: str, size: str, modified: str, folder: bool) -> str:
    """One table row; every string must already be safe HTML."""
    start = '<tr class="dir">' if folder else "<tr>"  # folders stand out (see _STYLE)
    return (
        f'{start}<td><a href="{html.escape(href)}">{label}</a></td>'
        f'<td class="size">{size}</td><td class="modified">{modified}</td></tr>'
    )


def _href(entry: Entry) -> str:
    """A relative link: `./` keeps `javascript:x` or `a:b` from being read as a URL scheme."""
    # safe="": `%`, `#`, `?` and `;` are quoted too, so a name can't end the path early.
    quoted = quote_from_bytes(_name_bytes(entry.name), safe="")
    return "./" + quoted + ("/" if entry.is_dir else "")


def _name_bytes(name: str) -> bytes:
    """The name as UTF-8 bytes, giving back the raw bytes os.listdir could not decode."""
    try:
        # PEP 383: undecodable bytes in a file name come back from os.listdir as lone
        # surrogates; str.encode would raise on them and turn the listing into a 500.
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "replace")  # a surrogate that was never a byte


def _display_name(name: str) -> str:
    """The name as readable text: bytes that are not UTF-8 show as U+FFFD."""
    return _name_bytes(name).decode("utf-8", "replace")


def _human_size(size: int) -> str:
    """`512 B`, `1.2 KiB`, `3.0 MiB`: binary units, one decimal."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in _UNITS[:-1]:
        if round(value, 1) < 1024:  # else it would print as `1024.0 KiB`
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def _utc(mtime: float) -> time.struct_time:
    return time.gmtime(min(max(int(mtime), 0), _LATEST))
