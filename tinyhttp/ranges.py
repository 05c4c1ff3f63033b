"""Range requests (RFC 9110 §14): which bytes a Range header asks for, and how to frame them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .message import FileSlice, Reply, replace_header

__all__ = [
    "MAX_RANGES",
    "ByteRange",
    "content_range",
    "layout_length",
    "multipart_layout",
    "partial_reply",
    "select_ranges",
    "unsatisfied_range",
]

# The guard of nginx's max_ranges (Apache: MaxRanges): hundreds of tiny ranges cost us a
# part head each and the client nothing (CVE-2011-3192, "Apache Killer"), so past 16 we
# send the whole file with 200, as RFC 9110 §14.2 lets a server ignore Range. Real clients
# (players, download managers) ask for one range, PDF readers for a handful.
MAX_RANGES = 16
# RFC 9110 §14.1.2: "recipients MUST anticipate potentially large decimal numerals".
# int() refuses strings over 4,300 digits (CVE-2020-10735), so long numbers are never
# converted: up to 18 digits are taken exactly (below an exabyte), any longer number
# stands for 2**63, which no file reaches (off_t, the OS's file offset, is a signed 64 bits).
_MAX_DIGITS = 18
_HUGE = 2**63
# One range-spec (RFC 9110 §14.1.1): `first-last`, `first-` or `-suffix`, DIGIT only.
# [0-9], not \d: \d and int() both accept other scripts' digits, such as "٣".
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` of a file, both inclusive, as in `Content-Range`."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def select_ranges(header: str, size: int) -> list[ByteRange] | None:
    """The ranges to send for a Range header: None = ignore it (200), [] = 416.

    Otherwise the satisfiable ranges, clamped to the file, sorted, with overlapping or
    adjacent ones merged.
    """
    specs = _parse(header)
    # A zero-length file has no bytes to range over: send it whole (RFC 9110 §14.2 "MAY ignore").
    if specs is None or size == 0 or len(specs) > MAX_RANGES:
        return None
    ranges = [r for spec in specs if (r := _satisfiable(spec, size)) is not None]
    # nginx's guard, before merging: `0-,0-,0-...` would make us send the file many times over.
    if sum(r.length for r in ranges) > size:
        return None
    return _coalesce(ranges)


def _parse(header: str) -> list[tuple[str, str]] | None:
    """The (first, last) digit strings of each range-spec, or None if the header is invalid."""
    unit, equals, range_set = header.strip().partition("=")
    # Range units are case-insensitive (RFC 9110 §14.1); no space is allowed around "=".
    if not equals or unit.lower() != "bytes":
        return None
    specs = []
    for element in range_set.split(","):
        element = element.strip(" \t")
        if not element:
            continue  # RFC 9110 §5.6.1.2: a recipient accepts empty list elements
        match = _SPEC.fullmatch(element)
        # One invalid range-spec makes the whole ranges-specifier invalid (RFC 9110 §14.1.1).
        if match is None or not _valid(*match.groups()):
            return None
        specs.append((match[1], match[2]))
    return specs or None  # `bytes=` names no range at all (range-set is 1#range-spec)


def _valid(first: str, last: str) -> bool:
    """A range-spec is invalid when it is a bare `-` or when last < first (RFC 9110 §14.1.1)."""
    if not first or not last:
        return bool(first or last)
    return _order_key(first) <= _order_key(last)


def _order_key(digits: str) -> tuple[int, str]:
    """Orders digit strings by value without int(), so 5,000-digit numbers compare too."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _number(digits: str) -> int:
    """The value of a digit string; anything over 18 significant digits counts as _HUGE."""
    significant = digits.lstrip("0")  # leading zeros are legal (1*DIGIT) and mean nothing
    if len(significant) > _MAX_DIGITS:
        return _HUGE
    return int(significant or "0")


def _satisfiable(spec: tuple[str, str], size: int) -> ByteRange | None:
    """The spec clamped to the file, or None if it names no byte of it (RFC 9110 §14.1.2)."""
    first, last = spec
    if not first:
        suffix = _number(last)
        if suffix == 0:
            return None  # `-0`: the last zero bytes are no bytes
        return ByteRange(max(size - suffix, 0), size - 1)  # longer than the file: all of it
    start = _number(first)
    if start >= size:
        return None
    end = size - 1 if not last else min(_number(last), size - 1)  # past EOF: up to EOF
    return ByteRange(start, end)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Sorted by start, with overlapping or touching ranges merged (RFC 9110 §14.2 "MAY")."""
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if merged and r.start <= merged[-1].end + 1:
            merged[-1] = ByteRange(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    return merged


def content_range(r: ByteRange, size: int) -> str:
    """The Content-Range of a 206 or of one multipart part: `bytes 0-99/1000` (RFC 9110 §14.4)."""
    return f"bytes {r.start}-{r.end}/{size}"


def unsatisfied_range(size: int) -> str:
    """The Content-Range of a 416: `bytes */1000` tells the client the length (RFC 9110 §14.4)."""
    return f"bytes */{size}"


def multipart_layout(
    ranges: list[ByteRange], size: int, content_type: str, boundary: str
) -> list[bytes | ByteRange]:
    """A multipart/byteranges body (RFC 9110 §14.6) as part heads, ranges and a closing line.

    The caller sends each ByteRange from the file itself, so nothing here reads a file.
    The body starts with `--boundary` itself, as in the RFC's example (no preamble); every
    later delimiter begins with the CRLF that ends the part before it (RFC 2046 §5.1.1).
    """
    layout: list[bytes | ByteRange] = []
    for index, r in enumerate(ranges):
        head = f"--{boundary}\r\n" if index == 0 else f"\r\n--{boundary}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Range: {content_range(r, size)}\r\n\r\n"
        layout += [head.encode("latin-1"), r]
    layout.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    return layout


def layout_length(layout: list[bytes | ByteRange]) -> int:
    """The exact byte count of a multipart layout, for its Content-Length."""
    return sum(len(part) if isinstance(part, bytes) else part.length for part in layout)


def partial_reply(
    fd: int, size: int, headers: list[tuple[str, str]], selected: list[ByteRange]
) -> Reply:
    """206 for the selected ranges of an open file, with the file's `headers`: one range as
    it is, several as multipart/byteranges."""
    if len(selected) == 1:
        part = selected[0]
        headers = replace_header(headers, "Content-Length", str(part.length))
        headers.append(("Content-Range", content_range(part, size)))
        return Reply(206, headers, FileSlice(fd, part.start, part.length))
    boundary = secrets.token_hex(16)
    layout = multipart_layout(selected, size, dict(headers)["Content-Type"], boundary)
    # Every part is a slice of the one descriptor, sent by offset: however many parts, the
    # reply holds one file open, and the last slice closes it.
    body: list[bytes | FileSlice] = [
        piece if isinstance(piece, bytes) else FileSlice(fd, piece.start, piece.length, False)
        for piece in layout
    ]
    last = body[-2]  # the closing delimiter comes after the last part
    assert isinstance(last, FileSlice)
    body[-2] = FileSlice(last.fd, last.offset, last.length, True)
    headers = replace_header(headers, "Content-Type", f"multipart/byteranges; boundary={boundary}")
    headers = replace_header(headers, "Content-Length", str(layout_length(layout)))
    return Reply(206, headers, body)
