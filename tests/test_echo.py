"""The request echo at /.well-known/tinyhttp/echo: pure tests of echo.py and static.py's routing,
then real requests over sockets and one real process started with --no-echo."""

from __future__ import annotations

import random
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT, Reader, Running, respond, send_in_pieces
from tinyhttp import echo
from tinyhttp.config import Config
from tinyhttp.message import Request

PATH = "/.well-known/tinyhttp/echo"
SECRETS = ("sessionid=s3cr3t-c00kie", "Basic dXNlcjpodW50ZXIy", "Bearer pr0xy-t0ken")


def _request(target: str = PATH, method: str = "GET", **headers: str) -> Request:
    raw = (("Host", "127.0.0.1:8000"), *((k.replace("_", "-"), v) for k, v in headers.items()))
    return Request(
        method=method,
        target=target,
        headers={name.lower(): value for name, value in raw},
        raw_headers=raw,
        http_version="1.1",
    )


def _header(reply_headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in reply_headers if key.lower() == name.lower()), None)


# --- echo.py: pure -------------------------------------------------------------------------


def test_body_is_the_request_line_and_headers_in_their_own_case_and_order() -> None:
    body = echo.echo_body(
        "GET", "/x?y=1", "1.1", [("Host", "a"), ("user-agent", "ua"), ("X-MiXeD", "v")]
    )
    assert body == b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nuser-agent: ua\r\nX-MiXeD: v\r\n\r\n"


def test_secret_values_are_redacted_whatever_the_case_of_their_name() -> None:
    headers = [
        ("Cookie", SECRETS[0]),
        ("AUTHORIZATION", SECRETS[1]),
        ("proxy-Authorization", SECRETS[2]),
        ("cookie", "second=cookie-field"),
        ("X-Not-A-Cookie", "kept"),
    ]
    body = echo.echo_body("GET", PATH, "1.1", headers).decode()
    for secret in (*SECRETS, "second=cookie-field"):
        assert secret not in body
    assert "Cookie: [redacted]\r\n" in body
    assert "AUTHORIZATION: [redacted]\r\n" in body
    assert "proxy-Authorization: [redacted]\r\n" in body
    assert "cookie: [redacted]\r\n" in body
    assert "X-Not-A-Cookie: kept\r\n" in body


def test_bytes_above_ascii_come_back_unchanged() -> None:
    # Header values arrive latin-1 decoded, so every byte survives the round trip.
    utf8 = "café ✓".encode().decode("latin-1")
    body = echo.echo_body("GET", PATH, "1.0", [("X-Name", utf8)])
    assert body.endswith("X-Name: café ✓\r\n\r\n".encode())
    assert body.startswith(b"GET /.well-known/tinyhttp/echo HTTP/1.0\r\n")


# --- static.respond: when the echo answers -------------------------------------------------


def test_respond_answers_the_echo_as_plain_text_never_cached(tmp_path: Path) -> None:
    reply = respond(_request(Cookie=SECRETS[0], X_Trace="on"), Config(root=tmp_path))
    assert reply.status == 200
    assert _header(reply.headers, "Content-Type") == "text/plain; charset=utf-8"
    assert _header(reply.headers, "Cache-Control") == "no-store"
    assert isinstance(reply.body, bytes)
    assert _header(reply.headers, "Content-Length") == str(len(reply.body))
    text = reply.body.decode()
    assert text.startswith(f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")
    assert "Cookie: [redacted]" in text and SECRETS[0] not in text
    assert "X-Trace: on" in text


def test_head_has_the_get_headers_and_no_body(tmp_path: Path) -> None:
    config = Config(root=tmp_path)
    get = respond(_request(), config)
    head = respond(_request(method="HEAD"), config)
    assert head.status == 200 and head.body == b""
    assert _header(head.headers, "Content-Length") == str(get.length)


def test_the_query_is_ignored_and_shown(tmp_path: Path) -> None:
    reply = respond(_request(f"{PATH}?from=test"), Config(root=tmp_path))
    assert reply.status == 200
    assert isinstance(reply.body, bytes)
    assert reply.body.startswith(f"GET {PATH}?from=test HTTP/1.1\r\n".encode())


@pytest.mark.parametrize("target", [PATH + "/", PATH + "x", "/.well-known/tinyhttp/", "/echo"])
def test_only_that_exact_path_echoes(tmp_path: Path, target: str) -> None:
    assert respond(_request(target), Config(root=tmp_path)).status == 404


@pytest.mark.parametrize(
    "config",
    [
        {"echo": False},  # --no-echo
        {"bind": "0.0.0.0"},  # reachable from the network
        {"bind": "::"},
        {"bind": "192.0.2.10"},
    ],
    ids=["no-echo", "wildcard-v4", "wildcard-v6", "lan-address"],
)
def test_off_with_no_echo_or_off_loopback(tmp_path: Path, config: dict[str, object]) -> None:
    reply = respond(_request(), Config(root=tmp_path, **config))  # type: ignore[arg-type]
    assert reply.status == 404


def test_on_for_every_loopback_bind_and_unix_sockets(tmp_path: Path) -> None:
    for config in (
        Config(root=tmp_path, bind="::1"),
        Config(root=tmp_path, bind="127.0.0.2"),
        Config(root=tmp_path, unix=str(tmp_path / "sock")),
    ):
        assert respond(_request(), config).status == 200, config


def test_when_off_the_path_is_an_ordinary_file_path(tmp_path: Path) -> None:
    (tmp_path / ".well-known" / "tinyhttp").mkdir(parents=True)
    (tmp_path / ".well-known" / "tinyhttp" / "echo").write_bytes(b"a real file\n")
    assert respond(_request(), Config(root=tmp_path, echo=False)).body == b"a real file\n"
    assert respond(_request(), Config(root=tmp_path)).status == 200  # the echo wins when on


def test_other_methods_are_refused_as_for_files(tmp_path: Path) -> None:
    assert respond(_request(method="POST"), Config(root=tmp_path)).status == 405


def test_the_host_check_comes_first(tmp_path: Path) -> None:
    request = _request()
    rebound = Request(
        request.method,
        request.target,
        {"host": "evil.example"},
        (("Host", "evil.example"),),
        "1.1",
    )
    assert respond(rebound, Config(root=tmp_path)).status == 400


# --- over a real socket --------------------------------------------------------------------

RAW_HEAD = (
    f"GET {PATH}?q=1 HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "user-agent: lower/1.0\r\n"
    "X-MiXeD-Case: Keep Me\r\n"
    f"Cookie: {SECRETS[0]}\r\n"
    f"authorization: {SECRETS[1]}\r\n"
    "Accept: */*\r\n"
    "\r\n"
).encode()


@pytest.mark.parametrize("pieces", ["whole", "bytes", "random"])
def test_the_echo_is_the_head_as_sent(server: Running, pieces: str) -> None:
    rng = random.Random(3)
    sizes = {
        "whole": None,
        "bytes": iter(lambda: 1, 0),
        "random": iter(lambda: rng.randint(1, 9), 0),
    }[pieces]
    with server.connect() as sock:
        send_in_pieces(sock, RAW_HEAD, sizes)
        response = Reader(sock).response()
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    expected = RAW_HEAD
    for secret in SECRETS[:2]:
        expected = expected.replace(secret.encode(), b"[redacted]")
    assert response.body == expected


def test_a_kept_alive_connection_echoes_each_request(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        for name in ("First", "second"):
            sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\n{name}: 1\r\n\r\n".encode())
            body = reader.response().body.decode()
            assert f"\r\n{name}: 1\r\n" in body


def test_head_has_the_length_of_the_same_get(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(RAW_HEAD.replace(b"GET ", b"HEAD ", 1))
        head = reader.response(head_only=True)
        sock.sendall(RAW_HEAD)
        get = reader.response()
    assert head.status == get.status == 200
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))


def test_no_echo_is_a_404_over_the_socket(serve: Callable[..., Running]) -> None:
    running = serve(echo=False)
    with running.connect() as sock:
        sock.sendall(RAW_HEAD)
        response = Reader(sock).response()
    assert response.status == 404
    assert SECRETS[0].encode() not in response.body


def test_the_no_echo_flag_turns_it_off(site: Path) -> None:
    """The real command line: `tinyhttp --no-echo` answers the echo path with 404."""
    command = [sys.executable, "-m", "tinyhttp", "--no-echo", "-q", "--port", "0", str(site)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        assert ready, "tinyhttp printed nothing"
        line = process.stdout.readline().decode()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        with socket.create_connection(("127.0.0.1", int(found[1])), timeout=TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendall(RAW_HEAD)
            assert Reader(sock).response().status == 404
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=TIMEOUT + 5)
    assert process.returncode == 0, errors
