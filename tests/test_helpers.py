"""Unit tests for the small pure modules: mime, httpdate, log, and the Outbox.

The Outbox tests are the one place here that touches a socket: a socket.socketpair(), with a
timeout on every end, so a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyhttp import httpdate
from tinyhttp.httpdate import DateClock, format_http_date, parse_http_date
from tinyhttp.log import _UNSAFE, AccessLog, Exchange, escape
from tinyhttp.message import Request
from tinyhttp.mime import content_type

RFC_EXAMPLE = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7)
TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test must close every descriptor it opened (and the Outbox every file it sent)."""
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = set(os.listdir("/proc/self/fd"))
    yield
    leaked = set(os.listdir("/proc/self/fd")) - before
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"


# --- mime ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("old.htm", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("module.mjs", "text/javascript; charset=utf-8"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("app.wasm", "application/wasm"),
        ("logo.png", "image/png"),
        ("photo.jpg", "image/jpeg"),
        ("font.woff2", "font/woff2"),
        ("doc.pdf", "application/pdf"),
        ("archive.tar.gz", "application/gzip"),
        ("INDEX.HTML", "text/html; charset=utf-8"),
        ("PHOTO.PNG", "image/png"),
        ("App.Js", "text/javascript; charset=utf-8"),
        ("file.unknownext", "application/octet-stream"),
        ("README", "application/octet-stream"),
        ("Makefile", "application/octet-stream"),
        ("trailing.", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("DATA.JSON", "application/json"),
    ],
)
def test_content_type_of_text_like_types(name: str, media_type: str) -> None:
    value = content_type(name)
    assert value.split(";")[0] == media_type
    if ";" in value:
        assert value.split(";", 1)[1].strip() == "charset=utf-8"


def test_content_type_ignores_the_os_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A built-in table, not the system's mime.types, so every machine answers the same.
    monkeypatch.setattr(mimetypes, "guess_type", lambda *a, **k: ("application/x-bogus", None))
    assert content_type("app.js") == "text/javascript; charset=utf-8"
    assert content_type("weird.zzz") == "application/octet-stream"


def test_every_text_type_names_its_charset() -> None:
    names = ["a.html", "a.css", "a.js", "a.mjs", "a.txt", "a.md", "a.csv", "a.xml"]
    for name in names:
        value = content_type(name)
        assert value.startswith("text/"), name
        assert value.endswith("; charset=utf-8"), name


# --- httpdate ------------------------------------------------------------------------------


@pytest.fixture
def new_york_time() -> Iterator[None]:
    """Run in a time zone 5 hours west of UTC (a POSIX TZ string: no tzdata needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST5"
    time.tzset()
    assert time.timezone == 5 * 3600
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (RFC_EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (RFC_EXAMPLE + 0.999, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ],
)
def test_format_http_date(timestamp: float, text: str) -> None:
    assert format_http_date(timestamp) == text


@pytest.mark.parametrize("timestamp", [253402300800, 253402300800.5, 10**12, 10**18])
def test_format_http_date_clamps_year_10000_and_later(timestamp: float) -> None:
    # email.utils.formatdate raises for year 10000; a file touched that far ahead must not.
    assert format_http_date(timestamp) == "Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize("timestamp", [-1, -0.5, -86400 * 365, -(10**12)])
def test_format_http_date_clamps_negative_to_the_epoch(timestamp: float) -> None:
    assert format_http_date(timestamp) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_format_http_date_ignores_the_local_time_zone(new_york_time: None) -> None:
    assert format_http_date(RFC_EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"


HTTP_DATE_FORMS = [
    "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate, the preferred form
    "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 form
    "Sun Nov  6 08:49:37 1994",  # obsolete asctime() form
]


@pytest.mark.parametrize("text", HTTP_DATE_FORMS)
def test_parse_http_date_three_forms(text: str) -> None:
    assert parse_http_date(text) == RFC_EXAMPLE


@pytest.mark.parametrize("text", HTTP_DATE_FORMS)
def test_parse_http_date_ignores_the_local_time_zone(new_york_time: None, text: str) -> None:
    # RFC 9110 §5.6.7: every HTTP-date is UTC, asctime's form included (it has no zone).
    assert parse_http_date(text) == RFC_EXAMPLE


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "garbage",
        "yesterday",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:61:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 99999 08:49:37 GMT",
        "9" * 5000,
        "\x00",
    ],
)
def test_parse_http_date_garbage_is_none(text: str) -> None:
    assert parse_http_date(text) is None


@pytest.mark.parametrize("timestamp", [0, RFC_EXAMPLE, 1_700_000_000, 253402300799])
def test_parse_http_date_round_trips_format(timestamp: int) -> None:
    assert parse_http_date(format_http_date(timestamp)) == timestamp


def test_date_clock_formats_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [RFC_EXAMPLE + 0.0]
    calls: list[float] = []

    def counting_format(timestamp: float) -> str:
        calls.append(timestamp)
        return format_http_date(timestamp)

    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(httpdate, "format_http_date", counting_format)
    clock = DateClock()
    seen = []
    for fraction in (0.0, 0.25, 0.5, 0.999):
        now[0] = RFC_EXAMPLE + fraction
        seen.append(clock.now())
    assert seen == ["Sun, 06 Nov 1994 08:49:37 GMT"] * 4
    assert len(calls) == 1  # formatted once in that second
    now[0] = RFC_EXAMPLE + 1.0
    assert clock.now() == "Sun, 06 Nov 1994 08:49:38 GMT"
    assert len(calls) == 2


def test_date_clock_is_now() -> None:
    before = int(time.time())
    text = DateClock().now()
    after = int(time.time())
    assert text in {format_http_date(t) for t in range(before, after + 1)}


# --- log -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("\n", "\\x0a"),
        ("\r", "\\x0d"),
        ("\t", "\\x09"),
        ("\x00", "\\x00"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ('"', "\\x22"),
        ("\\", "\\x5c"),
        ("\\x0a", "\\x5cx0a"),  # a literal backslash sequence can't pose as an escape
        ("\x7f", "\\x7f"),
        ("GET /index.html?a=1&b=2 HTTP/1.1", "GET /index.html?a=1&b=2 HTTP/1.1"),
        ("", ""),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_escape_covers_every_ascii_control_character() -> None:
    for code in range(0x80):
        char = chr(code)
        if code < 0x20 or char in '"\\\x7f':
            assert escape(char) == f"\\x{code:02x}"
        else:
            assert escape(char) == char


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x9b", "\x9d", "\x9f"])
def test_escape_covers_c1_control_characters(char: str) -> None:
    # The log escapes control characters; U+0080..U+009F are control characters too, and the
    # request line reaches the log decoded as latin-1, so a raw 0x9B byte arrives as U+009B:
    # the 8-bit CSI that starts a terminal escape sequence.
    assert escape(char) == f"\\x{ord(char):02x}"


@given(st.text(alphabet=st.characters(max_codepoint=0xFF)))
def test_the_quick_path_escapes_exactly_as_the_table_does(text: str) -> None:
    # Text that needs nothing skips the table; whatever the text, the answer is the table's.
    assert escape(text) == text.translate(_UNSAFE)


def test_escape_is_reversible() -> None:
    original = 'GET /"a\\b\r\n\x1b[2J" HTTP/1.1 ~é'
    restored = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), escape(original))
    assert restored == original


LINE = re.compile(
    r"(?P<peer>\S+) - - \[(?P<time>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<ms>\d+\.\d{2})ms\n'
)


def log_line(
    log: AccessLog,
    peer: str,
    request_line: str,
    status: int,
    size: int,
    referer: str,
    agent: str,
    seconds: float,
    cut: str = "",
) -> None:
    """One answer logged as done `seconds` after its request began, then flushed."""
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.rpartition(" HTTP/")
    headers = {"referer": referer, "user-agent": agent}
    request = Request(method, target, {k: v for k, v in headers.items() if v}, http_version=version)
    assert Exchange(peer, request, 100.0).request_line == request_line
    exchange = Exchange(peer, request, 100.0, status)
    log.answered(exchange, size, 100.0 + seconds, cut)
    log.flush()


def test_access_log_writes_one_combined_line() -> None:
    stream = io.StringIO()
    log_line(
        AccessLog(stream),
        "127.0.0.1",
        "GET /index.html HTTP/1.1",
        200,
        1234,
        "",
        "curl/8.5",
        0.0012,
    )
    line = stream.getvalue()
    match = LINE.fullmatch(line)
    assert match, line
    assert match.group("peer", "request", "status", "size", "referer", "agent", "ms") == (
        "127.0.0.1",
        "GET /index.html HTTP/1.1",
        "200",
        "1234",
        "-",
        "curl/8.5",
        "1.20",
    )


def test_access_log_escapes_what_the_client_sent() -> None:
    stream = io.StringIO()
    forged = 'GET /x HTTP/1.1"\n10.0.0.1 - - [01/Jan/2000:00:00:00 +0000] "GET /admin" 200 0\x1b[2J'
    log_line(AccessLog(stream), "127.0.0.1", forged, 404, 135, 'http://a/"\n', "agent\\\x07", 0.5)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # no forged second line
    assert "\x1b" not in text and "\x07" not in text
    match = LINE.fullmatch(text)
    assert match, text
    assert match.group("request") == escape(forged)
    assert "\\x22\\x0a10.0.0.1" in match.group("request")
    assert match.group("referer") == "http://a/\\x22\\x0a"
    assert match.group("agent") == "agent\\x5c\\x07"


def test_access_log_one_line_per_response() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    for status in (200, 304, 404):
        log_line(log, "::1", "GET / HTTP/1.1", status, 0, "", "", 0.0)
    lines = stream.getvalue().splitlines(keepends=True)
    assert [LINE.fullmatch(line)["status"] for line in lines] == ["200", "304", "404"]  # type: ignore[index]


def test_access_log_quiet_writes_nothing() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, quiet=True)
    log_line(log, "127.0.0.1", "GET / HTTP/1.1", 200, 10, "", "", 0.001)
    assert stream.getvalue() == ""


def test_access_log_errors_show_even_when_quiet() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, quiet=True)
    log.error("Traceback (most recent call last):\n  boom\n")
    log.flush()
    assert stream.getvalue() == "Traceback (most recent call last):\n  boom\n"
