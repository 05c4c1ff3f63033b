"""Content negotiation: what Accept and Accept-Encoding let us send (RFC 9110 §12.5)."""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["accepted_codings", "accepts_coding", "accepts_html", "prefers_json"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 §5.6.2 tchar, already lower-cased
# RFC 9110 §12.4.2: at most three decimals, and never above 1.
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# RFC 9110 §8.4.1.3: "A recipient SHOULD consider x-gzip to be equivalent to gzip."
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}

# How closely a media range names a type: */* < text/* < text/html.
_ANY, _TYPE, _EXACT = 0, 1, 2
_NO_MATCH = (-1, 0.0)


# --- Accept-Encoding -----------------------------------------------------------------------


def accepted_codings(header: str | None) -> dict[str, float]:
    """Each content coding the client lists (lower-case, `x-gzip` as `gzip`) with its q.

    A malformed element — a bad token or a qvalue outside RFC 9110's grammar, such as
    `q=2` or `q=0.5000` — is ignored, as if the client had not sent it. A coding listed
    twice keeps its lowest q: a client that refuses it once has refused it.
    """
    codings: dict[str, float] = {}
    for coding, q in _elements(header or ""):
        if _TOKEN.fullmatch(coding):
            coding = _ALIASES.get(coding, coding)
            codings[coding] = min(q, codings.get(coding, q))
    return codings


def accepts_coding(header: str | None, coding: str) -> bool:
    """Whether we may send `coding`: it, or `*` when it isn't listed, has q > 0.

    No header means no: RFC 9110 would allow any coding then, but a client that says
    nothing may not be able to decode one, so precompressed files go only to those who ask.
    """
    codings = accepted_codings(header)
    coding = coding.lower()
    return codings.get(coding, codings.get("*", 0.0)) > 0


# --- Accept --------------------------------------------------------------------------------


def prefers_json(accept: str | None) -> bool:
    """Whether the client ranks application/json strictly above text/html.

    Each type takes the q of the most specific range that names it (`application/json` over
    `application/*` over `*/*`; RFC 9110 §12.5.1) and 0 if none does. JSON wins with a higher
    q, or with an equal q above 0 when it is named more specifically than HTML: so
    `application/json, */*` (axios) gets JSON, while `*/*` (curl, fetch()), `text/html,
    application/json`, a browser's `text/html,...,*/*;q=0.8` and no header at all get HTML.
    """
    ranges = _media_ranges(accept or "")
    json_rank, json_q = _rank(ranges, "application", "json")
    html_rank, html_q = _rank(ranges, "text", "html")
    if json_q != html_q:
        return json_q > html_q
    return json_q > 0 and json_rank > html_rank


def accepts_html(accept: str | None) -> bool:
    """Whether the client asks for HTML by name: `text/html` or `text/*`, with q > 0.

    `*/*` alone is not enough, on purpose: this decides `--spa`, where a browser navigation
    (which names text/html) gets the app's index.html, but a fetch() for data (which sends
    `*/*`) must see the real 404 rather than a page of HTML it cannot parse.
    """
    rank, q = _rank(_media_ranges(accept or ""), "text", "html")
    return rank >= _TYPE and q > 0


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) for each well-formed media range; `*/html` is not one."""
    ranges = []
    for media_range, q in _elements(accept):
        type_, slash, subtype = media_range.partition("/")
        well_formed = bool(slash and _TOKEN.fullmatch(type_) and _TOKEN.fullmatch(subtype))
        if well_formed and (type_ != "*" or subtype == "*"):
            ranges.append((type_, subtype, q))
    return ranges


def _rank(ranges: list[tuple[str, str, float]], type_: str, subtype: str) -> tuple[int, float]:
    """(specificity, q) of the most specific range matching type/subtype; ties take the top q."""
    # Deliberate simplification: media-type parameters (`text/html;level=1`) are ignored
    # for matching; the types we serve carry none a client would ask for.
    best = _NO_MATCH
    for range_type, range_subtype, q in ranges:
        if range_type == "*":
            specificity = _ANY
        elif range_type != type_:
            continue
        elif range_subtype == "*":
            specificity = _TYPE
        elif range_subtype == subtype:
            specificity = _EXACT
        else:
            continue
        best = max(best, (specificity, q))
    return best


# --- the list syntax both headers share ----------------------------------------------------


def _elements(header: str) -> Iterator[tuple[str, float]]:
    """Each `value;param=x;q=0.5` element as (value lower-cased, q); malformed ones skipped."""
    # Deliberate simplification: a quoted-string holding a comma is split there; the
    # pieces come out malformed and are skipped rather than misread.
    for element in header.split(","):
        value, *parameters = element.split(";")
        value = value.strip().lower()
        q = _weight(parameters)
        if value and q is not None:
            yield value, q


def _weight(parameters: list[str]) -> float | None:
    """The q parameter's value (1 when absent), or None when it is malformed."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else None
    return 1.0
