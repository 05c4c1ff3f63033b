"""The plain values a request's path passes along: Request, Reply, FileSlice and Refusal."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

from .pages import error_page

if TYPE_CHECKING:
    from .cache import Cached

__all__ = [
    "Body",
    "FileSlice",
    "Refusal",
    "Reply",
    "Request",
    "Stream",
    "add_vary",
    "error_reply",
    "refusal_for",
    "replace_header",
]


@dataclass(frozen=True, slots=True)
class FileSlice:
    """`length` bytes of an open file from `offset`, for the outbox to send.

    Several slices may share one descriptor (the parts of a multipart answer); only the one
    marked `last` closes it, so a reply of any number of parts holds one descriptor.
    """

    fd: int
    offset: int
    length: int
    last: bool = True

    def __len__(self) -> int:
        # h11 frames a body by len(); this lets the slice stand in for the bytes it holds.
        return self.length


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is markedly slower
class Request:
    """A request as plain values: header names lower-case, the target exactly as sent.
    Nothing changes one once it is made."""

    method: str
    target: str  # raw bytes decoded as latin-1, so every byte survives
    headers: Mapping[str, str] = field(default_factory=dict)
    # The head as h11 received it (names in the client's case), for the echo and the limits.
    raw_headers: tuple[tuple[str, str], ...] = ()
    http_version: str = "1.1"
    head_bytes: int = 0  # the head's size as it arrived, whitespace and folds included
    secure: str = ""  # over HTTPS, the TLS version and cipher: "TLSv1.3 TLS_AES_256_GCM_SHA384"


@dataclass(frozen=True, slots=True)
class Stream:
    """A body that never ends: the connection keeps the answer open and pushes more to it
    (a Server-Sent Events stream); `opening` is what goes out first."""

    opening: bytes


Body = bytes | FileSlice | Stream | list[bytes | FileSlice]


@dataclass(slots=True)
class Reply:
    """What to answer: a status, headers (no Date/Server), and the body."""

    status: int
    headers: list[tuple[str, str]]
    body: Body = b""
    origin: Cached | None = None  # set when the reply may be cached as it is

    @property
    def pieces(self) -> list[bytes | FileSlice]:
        """The body as a list of bytes and file slices (a stream's opening bytes)."""
        body = self.body
        if isinstance(body, Stream):
            return [body.opening]
        return body if isinstance(body, list) else [body]

    @property
    def length(self) -> int:
        return sum(len(piece) for piece in self.pieces)

    def close(self) -> None:
        """Release the files this reply holds open, when it will not be sent."""
        for piece in self.pieces:
            if isinstance(piece, FileSlice) and piece.last:
                os.close(piece.fd)
        self.body = b""


class Refusal(Exception):
    """A request we answer with an error status instead of a file."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


def error_reply(status: int, sentence: str) -> Reply:
    """A small HTML page with the status and one sentence (which must be safe HTML)."""
    body = error_page(status, HTTPStatus(status).phrase, sentence)
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return Reply(status, headers, body)


def add_vary(reply: Reply, name: str) -> None:
    """Add a name to the one Vary header, creating it if needed."""
    for i, (header, value) in enumerate(reply.headers):
        if header == "Vary":
            if name not in (v.strip() for v in value.split(",")):
                reply.headers[i] = (header, f"{value}, {name}")
            return
    reply.headers.append(("Vary", name))


def replace_header(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    """A copy of `headers` with `name`'s value replaced."""
    return [(n, value if n == name else v) for n, v in headers]


def refusal_for(error: OSError) -> Refusal:
    """An OS error as the status a client should see: never a 500."""
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refusal(403, "This file is not readable by the server.")
    if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        # Out of descriptors is our trouble, and passing: a 404 would tell the client, and
        # any cache on the way, that a file that exists is gone.
        return Refusal(503, "The server is too busy to open the file; try again shortly.")
    return Refusal(404, "No such file.")
