"""HTTP dates (RFC 9110 §5.6.7): formatting, parsing, and a once-a-second Date clock."""

from __future__ import annotations

import calendar
import re
import time

__all__ = ["DateClock", "format_http_date", "parse_http_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# An HTTP-date has a four-digit year; a file touched to year 10000 must not crash us
# (email.utils.formatdate raises there).
_LATEST = 253402300799  # 9999-12-31 23:59:59 UTC


def format_http_date(timestamp: float) -> str:
    """`Sun, 06 Nov 1994 08:49:37 GMT` for a Unix timestamp, clamped to 1970..9999."""
    t = time.gmtime(min(max(int(timestamp), 0), _LATEST))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


# The three forms a recipient must accept (RFC 9110 §5.6.7), all in GMT:
# IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`,
# and asctime `Sun Nov  6 08:49:37 1994`.
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
_FORMS = [
    re.compile(rf"[A-Z][a-z]{{2}}, (?P<day>\d\d) (?P<month>\w{{3}}) (?P<year>\d{{4}}) {_TIME} GMT"),
    re.compile(rf"[A-Z][a-z]+, (?P<day>\d\d)-(?P<month>\w{{3}})-(?P<year>\d\d) {_TIME} GMT"),
    re.compile(rf"[A-Z][a-z]{{2}} (?P<month>\w{{3}}) (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})"),
]


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch for any of the three HTTP date forms, or None if unparsable."""
    for form in _FORMS:
        match = form.fullmatch(text.strip(" \t"))
        if match is not None:
            return _seconds(match)
    return None


def _seconds(match: re.Match[str]) -> int | None:
    if match["month"] not in _MONTHS:
        return None
    year = int(match["year"])
    if year < 100:
        # RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
        this_year = time.gmtime().tm_year
        year += this_year - this_year % 100
        if year > this_year + 50:
            year -= 100
    fields = (year, _MONTHS.index(match["month"]) + 1, int(match["day"]))
    clock = (int(match["hour"]), int(match["minute"]), int(match["second"]))
    if not (1 <= fields[2] <= calendar.monthrange(*fields[:2])[1] and clock < (24, 0, 0)):
        return None
    if clock[1] > 59 or clock[2] > 60:
        return None
    return calendar.timegm((*fields, *clock, 0, 0, 0))


class DateClock:
    """The `Date` header value, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, format_http_date(second)
        return self._text
