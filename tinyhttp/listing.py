"""Directory listings as HTML and JSON, built from entries the caller has already scanned."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

__all__ = ["Entry", "html_listing", "json_listing", "sort_entries"]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
# Shown dates have a four-digit year; a file touched to year 10000 must not crash the listing.
_LATEST = 253402300799  # 9999-12-31 23:59:59 UTC
_NO_SIZE = "\u2014"  # an em dash: a folder's size on disk tells the reader nothing

_STYLE = """\
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 0.35rem 0.75rem; text-align: left; border-bottom: 1px solid #8884; }
td:first-child { overflow-wrap: anywhere; }
.size, .modified { white-space: nowrap; font-variant-numeric: tabular-nums; }
.size { text-align: right; }
tbody tr:hover { background: #8881; }"""


@dataclass(frozen=True)
class Entry:
    """One item of a folder, as the caller found it (name exactly as os.listdir gives it)."""

    name: str
    is_dir: bool
    size: int
    mtime: float


def sort_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Folders first, then by name ignoring case; the exact name breaks ties, so order is stable."""
    return sorted(entries, key=lambda entry: (not entry.is_dir, entry.name.casefold(), entry.name))


def html_listing(url_path: str, entries: list[Entry]) -> bytes:
    """A small UTF-8 HTML5 page listing the entries in the order given (see sort_entries).

    `url_path` is the decoded path of the folder; it ends with `/`, which the relative links
    (`./name`, `../`) rely on.
    """
    title = html.escape(f"Index of {url_path}")
    rows = [] if url_path == "/" else [_row("../", "../", _NO_SIZE, "")]
    rows += [_entry_row(entry) for entry in entries]
    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{title}</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        "<table>",
        '<thead><tr><th>Name</th><th class="size">Size</th>'
        '<th class="modified">Modified (UTC)</th></tr></thead>',
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "</body>",
        "</html>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


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
    return _row(_href(entry), html.escape(label), size, modified)


def _row(href: str, label: str, size: str, modified: str) -> str:
    """One table row; every argument must already be safe HTML."""
    return (
        f'<tr><td><a href="{html.escape(href)}">{label}</a></td>'
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
