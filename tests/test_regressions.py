"""Bugs a review of the source found, each with the request that showed it."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyhttp.config import Config
from tinyhttp.message import FileSlice, Request

from .conftest import TIMEOUT, Reader, Running, respond, wait_until


def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_head_deadline(serve) -> None:
    # Every byte used to re-arm the idle timeout: a slow body held its connection for ever.
    server = serve(head_timeout=0.5, idle_timeout=2.0)
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
        assert Reader(sock).response().status == 200  # answered at once; the body is dropped
        deadline = time.monotonic() + 3.0
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"x")  # one byte every 0.1 s: never idle for 2 s
                sock.settimeout(0.1)
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed, "the trickled body kept the connection open"


def test_multipart_parts_share_one_descriptor_and_leak_nothing(site: Path) -> None:
    # Each part used to hold a dup() of the file: many parts, many descriptors, and a
    # dup() failing when out of them leaked the others.
    before = len(os.listdir("/proc/self/fd"))
    headers = {"host": "localhost", "range": "bytes=0-1,5-6,9-10"}
    reply = respond(Request("GET", "/hello.txt", headers), Config(root=site))
    assert reply.status == 206
    slices = [piece for piece in reply.pieces if isinstance(piece, FileSlice)]
    assert len(slices) == 3 and len({piece.fd for piece in slices}) == 1
    assert [piece.last for piece in slices] == [False, False, True]
    assert len(os.listdir("/proc/self/fd")) == before + 1
    reply.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_spa_without_an_index_keeps_the_404(site: Path) -> None:
    (site / "index.html").unlink()
    request = Request("GET", "/app/route", {"host": "localhost", "accept": "text/html"})
    assert respond(request, Config(root=site, spa=True)).status == 404


def test_vary_names_each_field_once(site: Path) -> None:
    request = Request("GET", "/app/route", {"host": "localhost", "accept": "text/html"})
    reply = respond(request, Config(root=site, spa=True, cors_origin="https://a.example"))
    varies = [value for name, value in reply.headers if name == "Vary"]
    assert varies == ["Accept, Origin"]


def test_other_loopback_addresses_are_their_own_host(site: Path) -> None:
    request = Request("GET", "/hello.txt", {"host": "127.0.0.2:8000"})
    assert respond(request, Config(root=site, bind="127.0.0.2")).status == 200


def test_absolute_form_without_a_path(site: Path) -> None:
    request = Request("GET", "http://localhost?x=1", {"host": "localhost"})
    assert respond(request, Config(root=site)).status == 200


def test_precondition_failed_still_varies_on_the_coding(site: Path) -> None:
    (site / "app.js").write_bytes(b"let x = 1;\n" * 50)
    (site / "app.js.gz").write_bytes(gzip.compress((site / "app.js").read_bytes()))
    stat = (site / "app.js").stat()
    os.utime(site / "app.js.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    request = Request("GET", "/app.js", {"host": "localhost", "if-match": '"nope"'})
    reply = respond(request, Config(root=site))
    assert reply.status == 412
    assert ("Vary", "Accept-Encoding") in reply.headers


def test_a_crash_while_answering_head_still_gets_a_500(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the server")

    monkeypatch.setattr(server.server.shared, "respond", broken)
    with server.connect() as sock:
        sock.sendall(b"HEAD /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reader = Reader(sock)
        answer = reader.response(head_only=True)
        assert answer.status == 500
        assert answer.headers["connection"] == "close"
        assert reader.closed()
    # The line is written once the answer is done, at the end of that turn of the loop.
    assert wait_until(lambda: '"HEAD /hello.txt HTTP/1.1" 500' in server.log.getvalue())
    server.log.truncate(0)  # the traceback was expected: the fixture checks for others


def test_timeouts_must_be_finite() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tinyhttp", "--send-timeout", "inf"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 5,
    )
    assert result.returncode == 2
    assert "positive number" in result.stderr
