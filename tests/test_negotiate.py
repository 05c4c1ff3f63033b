"""Accept and Accept-Encoding (RFC 9110 §12.5), parsed from real clients' headers."""

from __future__ import annotations

import pytest

from tinyhttp.negotiate import accepted_codings, accepts_coding, accepts_html, prefers_json

# What real clients send (navigations; fetch() and curl send `*/*`).
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIREFOX_OLD = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CHROME_CSS = "text/css,*/*;q=0.1"
AXIOS = "application/json, text/plain, */*"
CURL = "*/*"

CHROME_ENCODING = "gzip, deflate, br, zstd"
CURL_COMPRESSED = "deflate, gzip, br, zstd"

MALFORMED = [
    "",
    ",,,",
    ";;;",
    "q=1",
    ";q=1",
    "gzip;q=",
    "gzip;q=abc",
    "gzip;q=nan",
    "gzip;q=inf",
    "gzip;q=1e0",
    "gzip;q=-1",
    "gzip;q=2",
    "gzip;q=1.5",
    "gzip;q=0.5000",
    "gzip q=1",
    "text/html;q",
    "text/;q=1",
    "/html",
    "*/html",
    "text/html/x",
    'text/html;foo="a,b";q=0.5',
    "\x00\xff\u2028",
    "9" * 10_000,
    "q=" + "9" * 10_000,
    "gzip;q=0." + "9" * 10_000,
    ", " * 5_000,
]


# --- Accept-Encoding -----------------------------------------------------------------------


def test_codings_with_q_values() -> None:
    assert accepted_codings("gzip;q=0.5, br, identity;q=0") == {
        "gzip": 0.5,
        "br": 1.0,
        "identity": 0.0,
    }


def test_codings_tolerate_whitespace_case_and_parameters() -> None:
    assert accepted_codings("  GZip ; Q = 0.8 ;foo=bar , BR;level=5,  ") == {
        "gzip": 0.8,
        "br": 1.0,
    }


def test_no_header_or_an_empty_one_accepts_nothing() -> None:
    assert accepted_codings(None) == {}
    assert accepted_codings("") == {}
    assert not accepts_coding(None, "gzip")
    assert not accepts_coding("", "br")


def test_malformed_qvalue_ignores_that_element_only() -> None:
    assert accepted_codings("gzip;q=2, br;q=0.5000, zstd;q=abc, deflate;q=0.25") == {
        "deflate": 0.25
    }


def test_x_gzip_counts_as_gzip() -> None:
    assert accepts_coding("x-gzip", "gzip")
    assert not accepts_coding("x-gzip;q=0, *", "gzip")


def test_a_coding_listed_twice_keeps_its_lowest_q() -> None:
    assert accepted_codings("gzip, gzip;q=0") == {"gzip": 0.0}
    assert accepted_codings("gzip;q=0, gzip") == {"gzip": 0.0}


@pytest.mark.parametrize(
    ("header", "coding", "accepted"),
    [
        (CHROME_ENCODING, "gzip", True),
        (CHROME_ENCODING, "br", True),
        (CURL_COMPRESSED, "br", True),
        ("gzip", "br", False),
        ("gzip", "GZIP", True),
        ("gzip;q=0", "gzip", False),
        ("gzip;q=0.001", "gzip", True),
        ("gzip;q=0.000", "gzip", False),
        ("gzip;q=1.000", "gzip", True),
        ("gzip;q=0, *", "gzip", False),  # listed explicitly: `*` does not override
        ("gzip;q=0, *", "br", True),
        ("*", "br", True),
        ("*;q=0", "gzip", False),
        ("*;q=0, br", "br", True),
        ("identity", "gzip", False),
        ("gzip;q=2, *;q=0.5", "gzip", True),  # the malformed element is ignored; `*` applies
    ],
)
def test_accepts_coding(header: str, coding: str, accepted: bool) -> None:
    assert accepts_coding(header, coding) is accepted


# --- Accept: JSON or HTML for a listing ----------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "json_wins"),
    [
        (None, False),
        ("", False),
        (CURL, False),
        (CHROME, False),
        (FIREFOX, False),
        (FIREFOX_OLD, False),
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json;charset=utf-8", True),
        (AXIOS, True),  # equal q, but JSON is named and HTML only reached through */*
        ("application/*", True),
        ("application/*, text/*", False),
        ("text/html, application/json", False),  # a tie goes to HTML
        ("application/json;q=0.9, text/html", False),
        ("application/json, text/html;q=0.9", True),
        ("application/json;q=0", False),
        ("application/json;q=0, */*", False),
        ("*/*;q=0.1, application/json;q=0.5", True),
        ("text/html;q=0, */*", True),  # anything but HTML: JSON is acceptable, HTML is not
        ("text/html;q=0, application/json;q=0.1", True),
        ("application/json;q=abc, */*", False),  # the malformed element is ignored
    ],
)
def test_prefers_json(accept: str | None, json_wins: bool) -> None:
    assert prefers_json(accept) is json_wins


# --- Accept: may a --spa fallback answer with index.html? ----------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        ("", False),
        (CURL, False),  # fetch() for data must get the real 404
        (AXIOS, False),
        (CHROME_IMAGE, False),
        (CHROME_CSS, False),
        (CHROME, True),
        (FIREFOX, True),
        ("text/html", True),
        ("TEXT/HTML;q=0.1", True),
        ("text/*", True),
        ("text/*;q=0.5, */*", True),
        ("text/html;q=0", False),
        ("text/html;q=0, */*", False),
        ("text/*, text/html;q=0", False),  # the more specific range decides
        ("text/*;q=0, text/html", True),
        ("text/plain", False),
        ("application/json", False),
        ("text/html;q=2", False),  # malformed: ignored, nothing else names HTML
    ],
)
def test_accepts_html(accept: str | None, html: bool) -> None:
    assert accepts_html(accept) is html


# --- nothing a client sends makes these raise ----------------------------------------------


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_headers_never_raise(header: str) -> None:
    assert isinstance(accepted_codings(header), dict)
    assert all(0.0 <= q <= 1.0 for q in accepted_codings(header).values())
    assert isinstance(accepts_coding(header, "gzip"), bool)
    assert isinstance(prefers_json(header), bool)
    assert isinstance(accepts_html(header), bool)


def test_a_quoted_comma_does_not_make_a_range_out_of_its_pieces() -> None:
    assert accepts_html('text/html;foo="a,b";q=0.5')
    assert not accepts_html('application/json;x="a,text/html"')
