"""File semantics through real clients: conditionals, ranges, listings, codings."""

from __future__ import annotations

import email
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from .conftest import BIG_SIZE, TIMEOUT, Reader, Running

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=20)


# --- conditional requests (RFC 9110 §13) ---------------------------------------------------


def test_etag_revalidation_gets_304_rfc9110_13_1_2(server: Running) -> None:
    first = requests.get(server.url + "hello.txt", timeout=TIMEOUT)
    again = requests.get(
        server.url + "hello.txt", headers={"If-None-Match": first.headers["ETag"]}, timeout=TIMEOUT
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Last-Modified"] == first.headers["Last-Modified"]
    assert again.headers["Cache-Control"] == "no-cache"
    assert "Date" in again.headers


@needs_curl
def test_curl_time_condition_gets_304_rfc9110_13_1_3(server: Running, site: Path) -> None:
    result = curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-z",
        str(site / "hello.txt"),
        server.url + "hello.txt",
    )
    assert result.stdout == b"304"


def test_if_match_mismatch_is_412_rfc9110_13_1_1(server: Running) -> None:
    r = requests.get(server.url + "hello.txt", headers={"If-Match": '"nope"'}, timeout=TIMEOUT)
    assert r.status_code == 412


def test_edit_changes_the_etag(server: Running, site: Path) -> None:
    before = requests.get(server.url + "hello.txt", timeout=TIMEOUT).headers["ETag"]
    path = site / "hello.txt"
    path.write_bytes(b"changed\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    r = requests.get(server.url + "hello.txt", headers={"If-None-Match": before}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == b"changed\n"


# --- ranges (RFC 9110 §14) -----------------------------------------------------------------


def test_single_range_is_206_rfc9110_14_4(server: Running, site: Path) -> None:
    r = requests.get(server.url + "big.bin", headers={"Range": "bytes=100-199"}, timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 100-199/{BIG_SIZE}"
    assert r.content == (site / "big.bin").read_bytes()[100:200]


def test_suffix_range_rfc9110_14_1_2(server: Running) -> None:
    r = requests.get(server.url + "hello.txt", headers={"Range": "bytes=-6"}, timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.content == b"world\n"


def test_unsatisfiable_range_is_416_rfc9110_15_5_17(server: Running) -> None:
    r = requests.get(server.url + "hello.txt", headers={"Range": "bytes=500-"}, timeout=TIMEOUT)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */13"


def test_invalid_range_is_ignored_rfc9110_14_2(server: Running) -> None:
    r = requests.get(server.url + "hello.txt", headers={"Range": "bytes=x-y"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == b"hello, world\n"


def test_if_range_with_old_etag_sends_whole_file_rfc9110_13_1_5(server: Running) -> None:
    headers = {"Range": "bytes=0-4", "If-Range": '"old"'}
    r = requests.get(server.url + "hello.txt", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == b"hello, world\n"


def test_head_ignores_range_rfc9110_14_2(server: Running) -> None:
    r = requests.head(server.url + "hello.txt", headers={"Range": "bytes=0-4"}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "13"


@needs_curl
def test_curl_resume_is_byte_exact(server: Running, site: Path, tmp_path: Path) -> None:
    original = (site / "big.bin").read_bytes()
    partial = tmp_path / "download.bin"
    partial.write_bytes(original[: len(original) // 3])  # as if the download broke here
    result = curl("-C", "-", "-o", str(partial), server.url + "big.bin")
    assert result.returncode == 0, result.stderr
    assert partial.read_bytes() == original


@needs_curl
def test_curl_two_ranges_is_multipart_rfc9110_14_6(server: Running, site: Path) -> None:
    result = curl("-D", "-", "-r", "0-99,200-299", server.url + "big.bin")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 Partial Content")
    content_type = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-type:")
    )
    message = email.message_from_bytes(b"Content-Type: " + content_type + b"\r\n\r\n" + body)
    parts = message.get_payload()
    assert isinstance(parts, list) and len(parts) == 2
    data = (site / "big.bin").read_bytes()
    assert parts[0]["Content-Range"] == f"bytes 0-99/{BIG_SIZE}"
    assert parts[0].get_payload(decode=True) == data[0:100]
    assert parts[1]["Content-Range"] == f"bytes 200-299/{BIG_SIZE}"
    assert parts[1].get_payload(decode=True) == data[200:300]


def test_multipart_length_is_exact(server: Running) -> None:
    with server.connect() as sock:
        request = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-1,5-6\r\n\r\n"
        sock.sendall(request * 2)  # the second answer parses only if the first was exact
        reader = Reader(sock)
        first, second = reader.response(), reader.response()
    assert first.status == second.status == 206
    for response in (first, second):
        boundary = response.headers["content-type"].partition("boundary=")[2].encode()
        assert response.body.startswith(b"--" + boundary + b"\r\n")
        assert response.body.endswith(b"\r\n--" + boundary + b"--\r\n")
        assert b"Content-Range: bytes 0-1/13\r\n\r\nhe\r\n" in response.body
        assert b"Content-Range: bytes 5-6/13\r\n\r\n, \r\n" in response.body


# --- listings ------------------------------------------------------------------------------


def test_listing_html_and_json(server: Running, site: Path) -> None:
    (site / "empty" / "a <b>.txt").write_bytes(b"x")
    (site / "empty" / "inner").mkdir()
    page = requests.get(server.url + "empty/", timeout=TIMEOUT)
    assert page.status_code == 200
    assert page.headers["Vary"] == "Accept"
    assert "a &lt;b&gt;.txt" in page.text
    assert "<b>" not in page.text
    listing = requests.get(
        server.url + "empty/", headers={"Accept": "application/json"}, timeout=TIMEOUT
    )
    names = [e["name"] for e in json.loads(listing.content)["entries"]]
    assert names == ["inner", "a <b>.txt"]  # folders first


def test_no_listing_flag(serve) -> None:
    server = serve(listing=False)
    assert requests.get(server.url + "empty/", timeout=TIMEOUT).status_code == 404


# --- representation ------------------------------------------------------------------------


@pytest.fixture
def gz_site(site: Path) -> Path:
    text = b"precompressed text " * 200
    (site / "app.js").write_bytes(text)
    (site / "app.js.gz").write_bytes(gzip.compress(text))
    stat = (site / "app.js").stat()
    os.utime(site / "app.js.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    return site


@needs_curl
def test_curl_compressed_gets_the_original(server: Running, gz_site: Path) -> None:
    result = curl("--compressed", "-D", "-", "-o", "-", server.url + "app.js")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    assert b"Vary: Accept-Encoding" in head
    assert b"Content-Type: text/javascript; charset=utf-8" in head
    assert body == (gz_site / "app.js").read_bytes()


def test_codings_have_their_own_etags(server: Running, gz_site: Path) -> None:
    plain = requests.get(
        server.url + "app.js", headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT
    )
    coded = requests.get(
        server.url + "app.js", headers={"Accept-Encoding": "gzip"}, timeout=TIMEOUT
    )
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert coded.headers["Content-Encoding"] == "gzip"
    assert plain.headers["ETag"] != coded.headers["ETag"]


def test_stale_sibling_is_not_served(server: Running, gz_site: Path) -> None:
    stat = (gz_site / "app.js").stat()
    os.utime(gz_site / "app.js.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    r = requests.get(server.url + "app.js", headers={"Accept-Encoding": "gzip"}, timeout=TIMEOUT)
    assert "Content-Encoding" not in r.headers


def test_max_age_header_and_cors(serve) -> None:
    server = serve(max_age=600, cors_origin="*", extra_headers=(("X-Test", "1"),))
    r = requests.get(server.url + "hello.txt", timeout=TIMEOUT)
    assert r.headers["Cache-Control"] == "public, max-age=600"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["X-Test"] == "1"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_cors_preflight(serve) -> None:
    server = serve(cors_origin="https://app.example")
    r = requests.options(
        server.url + "hello.txt",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
        timeout=TIMEOUT,
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Headers"] == "range"
    assert "Origin" in r.headers["Vary"]


def test_spa_serves_index_for_routes(serve) -> None:
    server = serve(spa=True)
    page = requests.get(server.url + "app/route", headers={"Accept": "text/html"}, timeout=TIMEOUT)
    assert page.status_code == 200
    assert page.headers["Vary"] == "Accept"
    assert b"Hello from the test site" in page.content
    api = requests.get(server.url + "app/route", headers={"Accept": "*/*"}, timeout=TIMEOUT)
    assert api.status_code == 404
    asset = requests.get(
        server.url + "missing.js", headers={"Accept": "text/html"}, timeout=TIMEOUT
    )
    assert asset.status_code == 404


def test_site_404_page(server: Running, site: Path) -> None:
    (site / "404.html").write_bytes(b"<h1>Our own 404</h1>\n")
    r = requests.get(server.url + "missing", timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.content == b"<h1>Our own 404</h1>\n"
