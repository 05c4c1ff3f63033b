"""h11's event objects in plain values and back, with no I/O: the Request made of an
h11.Request, the h11.Response for a Reply's head, and an event told in one line for --trace."""

from __future__ import annotations

from http import HTTPStatus

import h11

from . import SERVER
from .httpdate import DateClock
from .message import Refusal, Request

__all__ = ["Heads", "describe", "plain_request", "refusal"]

# h11 sends `HTTP/1.1 200 ` unless told the reason phrase.
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class Heads:
    """The h11.Response events of this second's answers, each built once and reused.

    Building a Response validates every header field, and the same small file answered a
    thousand times a second has the same head, Date included: keep it until the Date changes.
    """

    # Distinct heads kept within one second, at most: enough for a site's hot files.
    LIMIT = 1024

    def __init__(self, clock: DateClock) -> None:
        self.clock = clock
        self._date = ""
        self._made: dict[tuple[int, tuple[tuple[str, str], ...], bool], h11.Response] = {}

    def response(
        self, status: int, headers: tuple[tuple[str, str], ...], close: bool
    ) -> h11.Response:
        """The Response for a reply: Date, Server and nosniff first, then its own headers."""
        date = self.clock.now()
        if date != self._date or len(self._made) >= self.LIMIT:
            self._date = date
            self._made.clear()
        key = (status, headers, close)
        response = self._made.get(key)
        if response is None:
            fields = [("Date", date), ("Server", SERVER), ("X-Content-Type-Options", "nosniff")]
            fields += [*headers, ("Connection", "close")] if close else headers
            reason = REASONS.get(status, b"")
            response = self._made[key] = h11.Response(
                status_code=status, headers=fields, reason=reason
            )
        return response


def plain_request(event: h11.Request, head_bytes: int, secure: str = "") -> Request:
    """The request as plain values: lower-case names, repeated fields joined (RFC 9110 §5.3),
    and the fields as sent, for the echo."""
    raw = [
        (name.decode("ascii"), value.decode("latin-1")) for name, value in event.headers.raw_items()
    ]
    headers: dict[str, str] = {}
    for name, text in raw:
        key = name.lower()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=event.method.decode("ascii"),
        target=event.target.decode("latin-1"),  # every byte survives latin-1
        headers=headers,
        raw_headers=tuple(raw),
        http_version=event.http_version.decode("ascii"),
        head_bytes=head_bytes,
        secure=secure,
    )


def refusal(error: h11.RemoteProtocolError) -> Refusal:
    """The answer to a request h11 could not parse, with h11's hint for its status."""
    if error.error_status_hint == 501:
        # h11's hint for a Transfer-Encoding other than one `chunked`. When chunked is not
        # the final coding the body's length is unknowable: RFC 9112 §6.3 says "the server
        # MUST respond with the 400 (Bad Request) status code and then close the connection".
        return Refusal(400, "Only Transfer-Encoding: chunked is understood here.")
    return Refusal(error.error_status_hint, "The request was malformed.")


def describe(event: object) -> str:
    """An h11 event in a line a reader can follow."""
    if isinstance(event, h11.Request):
        line = b"%s %s HTTP/%s" % (event.method, event.target, event.http_version)
        return f"Request {line.decode('latin-1')!r} with {len(event.headers)} header fields"
    if isinstance(event, h11.Data):
        return f"Data: {len(event.data)} body bytes"
    if event is h11.NEED_DATA:
        return "NEED_DATA: no complete event yet; wait for more bytes"
    if event is h11.PAUSED:
        return "PAUSED: the next request waits until this answer is out"
    return type(event).__name__
