"""HTTP dates (RFC 9110 §5.6.7): formatting, parsing, and a once-a-second Date clock."""

from __future__ import annotations

import time
from datetime import timezone
from email.utils import parsedate_to_datetime

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


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch for any of the three HTTP date forms, or None if unparsable."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # the asctime form has no zone; HTTP dates are all GMT
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


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
