"""scripts/raw_client.py, run as a process against a tinyhttp process serving a temporary folder."""

from __future__ import annotations

import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

TIMEOUT = 10.0  # every wait gives up after this long
RAW_CLIENT = Path(__file__).resolve().parents[1] / "scripts" / "raw_client.py"
SMALL = b"hello\r\n\x00\xff\xfe not text, and no newline at the end"
LARGE = random.Random(11).randbytes(300 * 1024 + 5)  # sent by sendfile, in many recv()s
URL_LINE = re.compile(r"Serving .+ at (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)")


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "small.bin").write_bytes(SMALL)
    (root / "large.bin").write_bytes(LARGE)
    (root / "a b é.txt").write_bytes(b"spaces and accents\n")
    return root


@pytest.fixture
def base_url(docroot: Path) -> Iterator[str]:
    """Run tinyhttp on a free port; the URL from its first line. Killed whatever happens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyhttp", str(docroot), "--port", "0", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)
    reader.start()
    try:
        try:
            first = lines.get(timeout=TIMEOUT).decode()
        except queue.Empty:
            pytest.fail("tinyhttp printed nothing")
        match = URL_LINE.fullmatch(first.rstrip("\n"))
        assert match is not None, first
        yield match[1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        reader.join(TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def raw_client(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(RAW_CLIENT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
    )


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw[:300]
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, line
        headers[name.lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize(("name", "content"), [("small.bin", SMALL), ("large.bin", LARGE)])
def test_prints_the_raw_response(base_url: str, name: str, content: bytes) -> None:
    result = raw_client(base_url + name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert result.stdout.endswith(b"\r\n\r\n" + content)
    status, headers, body = split(result.stdout)
    assert status == "HTTP/1.1 200 OK"
    assert body == content  # exactly the file: nothing added, nothing re-encoded
    assert headers["content-length"] == str(len(content))
    assert headers["content-type"] == "application/octet-stream"
    assert headers["server"].startswith("tinyhttp/")
    assert headers["connection"] == "close"
    assert "date" in headers


def test_quotes_spaces_and_non_ascii_and_keeps_the_query(base_url: str) -> None:
    result = raw_client(base_url + "a b é.txt?x=1&y=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert result.stdout.endswith(b"\r\n\r\nspaces and accents\n")


def test_prints_error_responses_too(base_url: str) -> None:
    result = raw_client(base_url + "missing.txt")
    assert result.returncode == 0, result.stderr
    status, headers, body = split(result.stdout)
    assert status == "HTTP/1.1 404 Not Found"
    assert len(body) == int(headers["content-length"])


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["http://127.0.0.1:1/", "extra"],
        ["ftp://127.0.0.1/x"],
        ["127.0.0.1:8000/"],
        ["http:///path"],
        ["http://127.0.0.1:99999/"],
        ["http://[::1/"],
        ["http://hôte.example/"],
    ],
    ids=repr,
)
def test_wrong_arguments_exit_2_with_usage(args: list[str]) -> None:
    result = raw_client(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == b""
    assert result.stderr.startswith(b"usage:")
    assert b"Traceback" not in result.stderr


def test_refused_connection_exits_1_without_traceback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
        port = probe.getsockname()[1]
        result = raw_client(f"http://127.0.0.1:{port}/")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == b""
    assert result.stderr.startswith(b"raw_client:")
    assert b"Traceback" not in result.stderr
