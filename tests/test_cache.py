"""The small-file cache: hits save work, and no edit is ever answered with old bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tinyhttp.cache import Cached, FileCache, Identity
from tinyhttp.config import Config
from tinyhttp.message import Request

from .conftest import TIMEOUT, Running, respond


def entry_for(path: Path, shadows: tuple[str, ...] = ()) -> Cached:
    body = path.read_bytes()
    return Cached(str(path), Identity.of(path.stat()), shadows, (("X", "1"),), body)


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.html"
    path.write_bytes(b"version one\n")
    return path


def test_hit_while_unchanged(page: Path) -> None:
    cache = FileCache(1024, settle_seconds=0)
    cache.put("k", entry_for(page))
    hit = cache.get("k")
    assert hit is not None and hit.body == b"version one\n"


def test_same_size_edit_with_old_mtime_is_a_miss(page: Path) -> None:
    cache = FileCache(1024, settle_seconds=0)
    cache.put("k", entry_for(page))
    before = page.stat()
    page.write_bytes(b"version two\n")  # same size
    os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime (touch -d)
    assert cache.get("k") is None  # ctime moved: never the old bytes


def test_replaced_file_is_a_miss(page: Path, tmp_path: Path) -> None:
    cache = FileCache(1024, settle_seconds=0)
    cache.put("k", entry_for(page))
    other = tmp_path / "other.html"
    other.write_bytes(b"version one\n")
    other.replace(page)  # a new inode under the same name
    assert cache.get("k") is None


def test_deleted_file_is_a_miss(page: Path) -> None:
    cache = FileCache(1024, settle_seconds=0)
    cache.put("k", entry_for(page))
    page.unlink()
    assert cache.get("k") is None


def test_a_shadow_appearing_is_a_miss(page: Path) -> None:
    shadow = str(page) + ".gz"
    cache = FileCache(1024, settle_seconds=0)
    cache.put("k", entry_for(page, (shadow,)))
    Path(shadow).write_bytes(b"x")
    assert cache.get("k") is None


def test_fresh_files_are_not_cached(page: Path) -> None:
    cache = FileCache(1024, settle_seconds=60)
    cache.put("k", entry_for(page))
    assert cache.get("k") is None


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    cache = FileCache(400, settle_seconds=0)
    for i in range(10):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes(100))
        cache.put(i, entry_for(path))
    assert cache.get(0) is None  # the oldest went first
    assert cache.get(9) is not None
    assert sum(cache.get(i) is not None for i in range(10)) <= 4


def test_static_uses_and_revalidates_the_cache(site: Path) -> None:
    config = Config(root=site)
    cache = FileCache(1 << 20, settle_seconds=0)
    request = Request("GET", "/hello.txt", {"host": "localhost"})
    first = respond(request, config, cache)
    assert first.origin is not None
    hit = respond(request, config, cache)
    assert hit.body == first.body and hit.headers == first.headers
    etag = dict(first.headers)["ETag"]
    unchanged = respond(Request("GET", "/hello.txt", {"if-none-match": etag}), config, cache)
    assert unchanged.status == 304
    (site / "hello.txt").write_bytes(b"HELLO, WORLD\n")
    assert respond(request, config, cache).body == b"HELLO, WORLD\n"


def test_index_htm_is_not_hidden_after_index_html_appears(site: Path) -> None:
    config = Config(root=site)
    cache = FileCache(1 << 20, settle_seconds=0)
    (site / "empty" / "index.htm").write_bytes(b"htm\n")
    request = Request("GET", "/empty/", {"host": "localhost"})
    assert respond(request, config, cache).body == b"htm\n"
    assert respond(request, config, cache).body == b"htm\n"
    (site / "empty" / "index.html").write_bytes(b"html\n")
    assert respond(request, config, cache).body == b"html\n"


def test_server_serves_edits_at_once(serve, site: Path) -> None:
    server: Running = serve(cache_settle_seconds=0)
    url = server.url + "hello.txt"
    for _ in range(3):
        assert requests.get(url, timeout=TIMEOUT).content == b"hello, world\n"
    before = (site / "hello.txt").stat()
    (site / "hello.txt").write_bytes(b"hello, again\n")  # the same size
    os.utime(site / "hello.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert requests.get(url, timeout=TIMEOUT).content == b"hello, again\n"
