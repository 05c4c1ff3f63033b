"""Conditional requests (RFC 9110 §13): entity-tags, validators and the order they are tested in."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .httpdate import parse_http_date

__all__ = [
    "evaluate",
    "if_range_holds",
    "list_matches",
    "parse_etags",
    "present",
    "strong_match",
    "weak_match",
]

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (RFC 9110 §8.8.3); "W/" is case-sensitive, and
# etagc includes the comma, so a list cannot simply be split on commas.
_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_ETAG = re.compile(_TAG)
# One list element: skip separators, then either a whole entity-tag ending at a comma or at
# the end (captured), or anything else up to the next comma (malformed, skipped).
_ELEMENT = re.compile(rf"[ \t,]*(?:({_TAG})[ \t]*(?=,|$)|[^,]*)")
_SAFE_METHODS = ("GET", "HEAD")


# The preconditions of RFC 9110 §13.1 that evaluate() looks at (If-Range belongs to ranges).
_PRECONDITIONS = frozenset(
    {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
)


def present(headers: Mapping[str, str]) -> bool:
    """Whether the request carries any precondition at all (most do not)."""
    return not _PRECONDITIONS.isdisjoint(headers)


def parse_etags(header: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match list, as sent; None means `*`.

    Malformed elements are skipped, never raised on: a stray one must not turn a
    conditional request into an error.
    """
    if header.strip(" \t") == "*":
        return None
    return [match[1] for match in _ELEMENT.finditer(header) if match[1]]


def strong_match(a: str, b: str) -> bool:
    """Strong comparison (RFC 9110 §8.8.3.2): both strong and character for character equal."""
    return not a.startswith("W/") and not b.startswith("W/") and a == b


def weak_match(a: str, b: str) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): equal opaque-tags, whatever their W/ prefixes."""
    return a.removeprefix("W/") == b.removeprefix("W/")


def evaluate(method: str, headers: Mapping[str, str], etag: str, last_modified: int) -> int | None:
    """412 or 304 if a precondition says so, else None; in RFC 9110 §13.2.2's order.

    `headers` has lower-case names; `last_modified` is whole seconds, as HTTP dates are.
    """
    if_match = headers.get("if-match")
    if if_match is not None:  # step 1
        if not list_matches(if_match, etag, strong_match):
            return 412
    else:  # step 2: If-Unmodified-Since counts only without If-Match (RFC 9110 §13.1.4)
        since = _date(headers.get("if-unmodified-since"))
        if since is not None and last_modified > since:
            return 412
    safe = method in _SAFE_METHODS
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:  # step 3
        if list_matches(if_none_match, etag, weak_match):
            return 304 if safe else 412
    elif safe:  # step 4: If-Modified-Since counts only without If-None-Match (RFC 9110 §13.1.3)
        since = _date(headers.get("if-modified-since"))
        if since is not None and last_modified <= since:
            return 304
    return None


def list_matches(header: str, etag: str, match: Callable[[str, str], bool]) -> bool:
    """Whether an If-Match / If-None-Match list names our tag; `*` names any current file."""
    tags = parse_etags(header)
    return tags is None or any(match(tag, etag) for tag in tags)


def _date(value: str | None) -> int | None:
    """An HTTP-date's seconds, or None: absent and unparsable dates are ignored alike."""
    # RFC 9110 §13.1.3/§13.1.4: ignore a value that "appears to be a list of dates";
    # one HTTP-date holds at most one comma (`Sun, 06 Nov 1994 08:49:37 GMT`).
    if value is None or value.count(",") > 1:
        return None
    return parse_http_date(value)


def if_range_holds(value: str, etag: str, last_modified: int) -> bool:
    """Whether If-Range lets the Range header count (RFC 9110 §13.1.5); else send it all.

    An entity-tag must match strongly, so a weak tag never does; a date must equal
    Last-Modified exactly, not merely be later (unlike If-Unmodified-Since).
    """
    value = value.strip(" \t")
    if value.startswith(('"', 'W/"')):
        return _ETAG.fullmatch(value) is not None and strong_match(value, etag)
    date = parse_http_date(value)
    return date is not None and date == last_modified
