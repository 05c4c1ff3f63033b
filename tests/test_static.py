"""Unit tests for tinyhttp.static: from a request's plain values to a Reply.

No sockets and no server: every test calls `respond()` or one of its pure helpers on a
small site built in pytest's tmp_path, with traps around it (a canary outside the root, a
sibling folder whose name shares the root's prefix, symlinks out, a FIFO, dotfiles).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tinyhttp.config import Config
from tinyhttp.message import FileSlice, Refusal, Request
from tinyhttp.static import parse_target, split_path

from .conftest import host_allowed, respond

ALLOW = "GET, HEAD, OPTIONS"
# Bytes that must never appear in any reply: they live outside the web root.
CANARY = b"canary-5b1e9d: this file lies OUTSIDE the web root\n"
SECRET = b"secret-a71c: www-secret is a sibling of www, not inside it\n"
BIG_SIZE = 100_000  # bigger than Config.small_file_bytes (64 KiB)
BIG = (bytes(range(251)) * (BIG_SIZE // 251 + 1))[:BIG_SIZE]
# 1994-11-06 08:49:37 UTC, RFC 9110's example date, as nanoseconds.
KNOWN_MTIME_NS = 784111777 * 10**9


# --- the site ------------------------------------------------------------------------------


@dataclass
class Site:
    """A web root in tmp_path with the files named in the module docstring."""

    tmp: Path
    root: Path

    def config(self, **overrides: Any) -> Config:
        return Config(root=self.root, **overrides)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    tmp = tmp_path
    root = tmp / "www"
    root.mkdir()
    # Outside the root: what traversal would reach.
    _write(tmp / "canary.txt", CANARY)
    _write(tmp / "x", CANARY)  # the target of /../x
    _write(tmp / "www-secret" / "secret.txt", SECRET)  # shares the prefix "/www"
    # Inside the root.
    _write(root / "index.html", b"<h1>home</h1>\n")
    _write(root / "hello.txt", b"hello, world\n")
    _write(root / "style.css", b"body { color: red }\n")
    _write(root / "app.js", b"console.log(1)\n")
    _write(root / "data.json", b'{"a": 1}\n')
    _write(root / "logo.PNG", b"\x89PNG\r\n\x1a\n")
    _write(root / "100%.txt", b"one hundred percent\n")
    _write(root / "café.txt", "un café\n".encode())
    _write(root / "big.bin", BIG)
    _write(root / "sub" / "index.html", b"<h1>sub</h1>\n")
    _write(root / "sub" / "page.txt", b"a page\n")
    _write(root / "noindex" / "file.txt", b"no index here\n")
    _write(root / "dossié" / "index.html", b"<h1>dossier</h1>\n")
    _write(root / "a?b" / "index.html", b"<h1>question</h1>\n")
    _write(root / ".env", b"SECRET_KEY=dotenv\n")
    _write(root / ".git" / "config", b"[core]\n\trepositoryformatversion = 0\n")
    _write(root / ".git" / "HEAD", b"ref: refs/heads/main\n")
    _write(root / ".well-known" / "security.txt", b"Contact: mailto:sec@example.com\n")
    _write(root / ".well-known" / ".hidden", b"hidden inside .well-known\n")
    # Symlinks: in, out, out to the prefix-sharing sibling, to .git, to a device.
    (root / "inside-link").symlink_to(root / "hello.txt")
    (root / "outside-link").symlink_to(tmp / "canary.txt")
    (root / "outdir-link").symlink_to(tmp, target_is_directory=True)
    (root / "sibling-link").symlink_to(tmp / "www-secret" / "secret.txt")
    (root / "sibling-dir-link").symlink_to(tmp / "www-secret", target_is_directory=True)
    (root / "gitcfg-link").symlink_to(root / ".git" / "config")
    (root / "env-link").symlink_to(root / ".env")
    (root / "known-link").symlink_to(root / ".well-known" / "security.txt")
    (root / "devnull-link").symlink_to("/dev/null")
    # Non-regular files: a FIFO, and a folder whose index.html is a FIFO.
    os.mkfifo(root / "pipe")
    (root / "fifo-dir").mkdir()
    os.mkfifo(root / "fifo-dir" / "index.html")
    _write(root / "fifo-dir" / "index.htm", b"<h1>htm fallback</h1>\n")
    return Site(tmp=tmp, root=root)


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test, and respond() itself, must close every descriptor it opened."""
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = set(os.listdir("/proc/self/fd"))
    yield
    leaked = set(os.listdir("/proc/self/fd")) - before
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"


# --- calling respond() ---------------------------------------------------------------------


@dataclass
class Result:
    """A Reply with its body read into bytes and its file closed."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    sliced: bool = False  # the body came as a FileSlice

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None


def _read_slice(piece: FileSlice) -> bytes:
    chunks = []
    offset, left = piece.offset, piece.length
    while left:
        chunk = os.pread(piece.fd, left, offset)
        assert chunk, "the file slice is longer than the file"
        chunks.append(chunk)
        offset += len(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def fetch(
    config: Config,
    target: str,
    method: str = "GET",
    host: str | None = "localhost:8000",
    headers: Mapping[str, str] | None = None,
) -> Result:
    """respond() to one request, check the invariants every reply keeps, and close it."""
    all_headers = {"host": host} if host is not None else {}
    all_headers.update(headers or {})
    reply = respond(Request(method, target, all_headers), config)
    pieces = reply.body if isinstance(reply.body, list) else [reply.body]
    try:
        sliced = any(isinstance(piece, FileSlice) for piece in pieces)
        body = b"".join(
            _read_slice(piece) if isinstance(piece, FileSlice) else bytes(piece) for piece in pieces
        )
    finally:
        reply.close()
    result = Result(reply.status, list(reply.headers), body, sliced)
    _check_invariants(result, method)
    return result


def _check_invariants(result: Result, method: str) -> None:
    HTTPStatus(result.status)  # a real status code
    length = result.header("Content-Length")
    if result.status == 204:
        assert length is None, "no Content-Length on a 204 (RFC 9110 §8.6)"
        assert result.body == b""
        return
    assert length is not None, "Content-Length on every file and generated page"
    if method == "HEAD":
        assert result.body == b"", "HEAD must not carry a body"
    else:
        assert int(length) == len(result.body)
    assert result.header("Content-Type")


# --- parse_target and split_path, the pure helpers -----------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/", "/", ""),
        ("/a%20b", "/a b", ""),
        ("/x?y=1&z=2", "/x", "y=1&z=2"),
        ("/x?y#frag", "/x", "y"),
        ("/x#frag?notquery", "/x", ""),
        ("/%252e%252e/x", "/%2e%2e/x", ""),  # decoded exactly once
        ("/caf%C3%A9.txt", "/café.txt", ""),
        ("/caf\xc3\xa9.txt", "/café.txt", ""),  # raw UTF-8 bytes, as h11 hands them (latin-1)
        ("/a%3Fb", "/a?b", ""),
        ("/q?a=%0d%0a", "/q", "a=%0d%0a"),  # the query is kept raw
        ("http://localhost/x", "/x", ""),
        ("http://localhost:8000/x/y?q", "/x/y", "q"),
        ("HTTP://localhost/x", "/x", ""),
        ("https://localhost/x", "/x", ""),
        ("http://localhost", "/", ""),
    ],
)
def test_parse_target_accepts(target: str, path: str, query: str) -> None:
    assert parse_target(target) == (path, query)


@pytest.mark.parametrize(
    "target",
    [
        "*",
        "x",
        "",
        "ftp://localhost/x",
        "/a%00b",
        "/..%5c..%5cx",
        "/..\\..\\x",
        "/%ff",
        "/%c3",  # a truncated UTF-8 sequence
        "/%c0%ae%c0%ae/x",  # overlong UTF-8 for '..'
        "/caf\xe9.txt",  # a raw latin-1 byte is not UTF-8
        "/a%01b",
        "/a%09b",
        "/a%0d%0ab",
        "/a%1bb",
        "/a%7fb",
        "/a\x01b",
        "/a\tb",
    ],
)
def test_parse_target_refuses_with_400(target: str) -> None:
    with pytest.raises(Refusal) as refused:
        parse_target(target)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", []),
        ("", []),
        ("/a/b", ["a", "b"]),
        ("//a///b/", ["a", "b"]),
        ("/a/./b/../c/", ["a", "c"]),
        ("/a/..", []),
        ("/a/b/../..", []),
        ("/./.", []),
        ("/...", ["..."]),  # three dots is a name, not a climb
        ("/%2e%2e", ["%2e%2e"]),  # split_path gets decoded paths: this is a literal name
        ("//evil.example/../sub", ["sub"]),
    ],
)
def test_split_path(path: str, segments: list[str]) -> None:
    assert split_path(path)[0] == segments


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("/", True),
        ("/a", False),
        ("/a/", True),
        ("/a/.", True),
        ("/a/b/..", True),
        ("/a/./b", False),
    ],
)
def test_split_path_says_when_a_path_names_a_folder(path: str, folder: bool) -> None:
    # RFC 3986 §5.2.4: /a/. is /a/ and /a/b/.. is /a/, folders both.
    assert split_path(path)[1] is folder


@pytest.mark.parametrize("path", ["/..", "/../x", "/a/../../x", "/a/b/../../../x", "/./../x"])
def test_split_path_climbing_above_root_is_404(path: str) -> None:
    with pytest.raises(Refusal) as refused:
        split_path(path)
    assert refused.value.status == 404


# --- traversal, decoding, bad characters ---------------------------------------------------


TRAVERSAL = [
    "/../x",
    "/a/../../x",
    "/sub/../../x",
    "/%2e%2e/x",
    "/%2E%2E%2Fx",
    "/.%2e/x",
    "/%2e./x",
    "/..%2f..%2fetc/passwd",
    "/../canary.txt",
    "/%2e%2e/canary.txt",
    "/../www-secret/secret.txt",
    "/%2e%2e%2fwww-secret%2fsecret.txt",
    "//evil.example/../../x",
    "http://localhost/../x",
    "http://localhost/%2e%2e/x",
]


@pytest.mark.parametrize("target", TRAVERSAL)
def test_traversal_is_404(site: Site, target: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 404
    assert CANARY not in result.body
    assert b"root:" not in result.body


@pytest.mark.parametrize("target", ["/%252e%252e/x", "/%252e%252e/canary.txt", "/%252E%252E/x"])
def test_double_encoding_is_a_literal_name_not_the_parent(site: Site, target: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 404  # there is no folder literally named %2e%2e
    assert CANARY not in result.body


def test_double_encoding_serves_the_literal_folder_when_it_exists(site: Site) -> None:
    _write(site.root / "%2e%2e" / "x", b"the literal folder\n")
    result = fetch(site.config(), "/%252e%252e/x")
    assert (result.status, result.body) == (200, b"the literal folder\n")


@pytest.mark.parametrize(
    "target",
    [
        "/a%00b",
        "/hello.txt%00.png",
        "/..%5c..%5cx",
        "/sub%5cpage.txt",
        "/..\\..\\x",
        "/sub\\page.txt",
        "/a%01b",
        "/a%0ab",
        "/a%0d%0aSet-Cookie:%20x",
        "/a%1b[31m",
        "/a%7f",
        "/a\tb",
        "/%ff",
        "/%c0%ae%c0%ae/x",
        "/caf\xe9.txt",
    ],
)
def test_bad_bytes_in_the_path_are_400(site: Site, target: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 400
    assert CANARY not in result.body


@pytest.mark.parametrize("target", ["/a%c2%85b", "/a%c2%9b31m", "/a%c2%80"])
def test_c1_control_characters_are_400(site: Site, target: str) -> None:
    # Control characters -> 400. U+0080..U+009F are control characters (Unicode Cc)
    # just like U+0000..U+001F; U+009B is the 8-bit CSI that starts a terminal escape.
    assert fetch(site.config(), target).status == 400


def test_non_ascii_names_are_served(site: Site) -> None:
    for target in ("/caf%C3%A9.txt", "/caf%c3%a9.txt", "/caf\xc3\xa9.txt"):
        result = fetch(site.config(), target)
        assert (result.status, result.body) == (200, "un café\n".encode()), target


def test_percent_in_a_file_name(site: Site) -> None:
    result = fetch(site.config(), "/100%25.txt")
    assert (result.status, result.body) == (200, b"one hundred percent\n")


def test_error_pages_do_not_echo_the_request(site: Site) -> None:
    result = fetch(site.config(), "/%3Cscript%3Ealert(1)%3C/script%3E")
    assert result.status == 404
    assert b"<script" not in result.body.lower()


# --- symlinks and containment by components ------------------------------------------------


def test_symlink_inside_the_root_is_served(site: Site) -> None:
    result = fetch(site.config(), "/inside-link")
    assert (result.status, result.body) == (200, b"hello, world\n")


@pytest.mark.parametrize(
    "target", ["/outside-link", "/outdir-link/x", "/outdir-link/canary.txt", "/outdir-link"]
)
def test_symlink_escaping_the_root_is_404(site: Site, target: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 404
    assert CANARY not in result.body


def test_a_link_to_a_dotfile_is_as_hidden_as_the_dotfile(site: Site) -> None:
    assert fetch(site.config(), "/env-link").status == 404
    assert fetch(site.config(dotfiles=True), "/env-link").status == 200
    assert fetch(site.config(), "/known-link").status == 200  # .well-known is served
    # ...wherever a link to it leads (a deploy tool may keep the real one deeper).
    _write(site.root / "static" / ".well-known" / "acme.txt", b"token\n")
    os.rename(site.root / ".well-known", site.tmp / "old-well-known")
    (site.root / ".well-known").symlink_to(site.root / "static" / ".well-known")
    assert fetch(site.config(), "/.well-known/acme.txt").body == b"token\n"
    (site.root / "noindex" / "env-link").symlink_to(site.root / ".env")
    listing = fetch(site.config(), "/noindex/")
    assert b"file.txt" in listing.body and b"env-link" not in listing.body


def test_symlink_escaping_the_root_is_served_with_follow_symlinks(site: Site) -> None:
    config = site.config(follow_symlinks=True)
    assert fetch(config, "/outside-link").body == CANARY
    assert fetch(config, "/outdir-link/x").body == CANARY
    # Following links never lets a URL climb: `..` is resolved before the file system.
    assert fetch(config, "/../x").status == 404


@pytest.mark.parametrize(
    "target", ["/sibling-link", "/sibling-dir-link/secret.txt", "/../www-secret/secret.txt"]
)
def test_sibling_folder_sharing_the_roots_prefix_is_unreachable(site: Site, target: str) -> None:
    # /tmp/.../www-secret starts with the string /tmp/.../www but is not inside it.
    result = fetch(site.config(), target)
    assert result.status == 404
    assert SECRET not in result.body


def test_root_given_through_a_symlink_is_resolved(site: Site) -> None:
    link = site.tmp / "www-link"
    link.symlink_to(site.root, target_is_directory=True)
    config = Config(root=link)
    assert config.root == site.root.resolve()
    assert fetch(config, "/hello.txt").body == b"hello, world\n"
    assert fetch(config, "/outside-link").status == 404


def test_device_is_404(site: Site) -> None:
    assert fetch(site.config(), "/devnull-link").status == 404  # outside the root
    assert fetch(site.config(follow_symlinks=True), "/devnull-link").status == 404  # a device


# --- dotfiles and .git ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/.env",
        "/%2eenv",
        "/sub/../.env",
        "/.git/config",
        "/.git/HEAD",
        "/.git",
        "/.git/",
        "/%2egit/config",
        "/.well-known/.hidden",
        "/.well-known/../.env",
        "/gitcfg-link",
    ],
)
def test_dotfiles_are_404_by_default(site: Site, target: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 404
    assert b"SECRET_KEY" not in result.body
    assert b"repositoryformatversion" not in result.body


def test_well_known_is_served(site: Site) -> None:
    result = fetch(site.config(), "/.well-known/security.txt")
    assert (result.status, result.body) == (200, b"Contact: mailto:sec@example.com\n")


def test_dotfiles_option_serves_dotfiles(site: Site) -> None:
    config = site.config(dotfiles=True)
    assert fetch(config, "/.env").body == b"SECRET_KEY=dotenv\n"
    assert fetch(config, "/.well-known/.hidden").status == 200


@pytest.mark.parametrize(
    "target", ["/.git/config", "/.git/HEAD", "/.git/", "/%2egit/config", "/gitcfg-link"]
)
@pytest.mark.parametrize("dotfiles", [False, True])
def test_git_is_never_served(site: Site, target: str, dotfiles: bool) -> None:
    result = fetch(site.config(dotfiles=dotfiles), target)
    assert result.status == 404
    assert b"repositoryformatversion" not in result.body
    assert b"refs/heads" not in result.body


# --- the canary: nothing outside the root ever appears -------------------------------------


ATTACKS = [
    *TRAVERSAL,
    "/%252e%252e/canary.txt",
    "/outside-link",
    "/outdir-link/canary.txt",
    "/sibling-link",
    "/sibling-dir-link/secret.txt",
    "//evil.example/%2e%2e/canary.txt",
    "/..%5ccanary.txt",
    "/..%00/canary.txt",
    "/%c0%ae%c0%ae/canary.txt",
    "/%2e%2e%2f%2e%2e%2fcanary.txt",
    "/sub/%2e%2e/%2e%2e/canary.txt",
    "/" + "../" * 20 + "canary.txt",
    "http://localhost/../canary.txt",
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("target", ATTACKS)
def test_canary_never_leaks(site: Site, target: str, method: str) -> None:
    for config in (site.config(), site.config(dotfiles=True)):
        result = fetch(config, target, method)
        assert result.status in (400, 404), target
        assert CANARY not in result.body
        assert SECRET not in result.body


# --- directories ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/sub", "/sub/"),
        ("//sub", "/sub/"),
        ("///sub", "/sub/"),
        ("//evil.example/%2e%2e/sub", "/sub/"),
        ("//evil.example/../sub", "/sub/"),
        ("//evil.example/%2e%2e/sub?next=//evil.example", "/sub/?next=//evil.example"),
        ("/sub?a=1&b=2", "/sub/?a=1&b=2"),
        ("/sub?a=1#frag", "/sub/?a=1"),
        ("http://localhost/sub", "/sub/"),
        ("http://localhost//evil.example/../sub", "/sub/"),
        ("/noindex", "/noindex/"),
        ("/dossi%C3%A9", "/dossi%C3%A9/"),
        ("/a%3Fb", "/a%3Fb/"),
    ],
)
def test_directory_without_slash_redirects_on_site(site: Site, target: str, location: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 301
    assert result.header("Location") == location
    assert re.match(r"/(?!/)", location)  # exactly one leading slash: never off-site


def test_redirect_location_has_no_control_characters(site: Site) -> None:
    result = fetch(site.config(), "/sub?a=\r\nSet-Cookie:x\x00")
    assert result.status == 301
    location = result.header("Location")
    assert location is not None
    assert location.startswith("/sub/?")
    assert not any(ord(c) < 0x21 or ord(c) == 0x7F for c in location)


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/", b"<h1>home</h1>\n"),
        ("/sub/", b"<h1>sub</h1>\n"),
        ("/sub/./", b"<h1>sub</h1>\n"),
        ("/sub/.", b"<h1>sub</h1>\n"),  # RFC 3986 §5.2.4: /sub/. is /sub/
        ("/sub/x/..", b"<h1>sub</h1>\n"),
        ("/sub%2f", b"<h1>sub</h1>\n"),
        ("//evil.example/../sub/", b"<h1>sub</h1>\n"),
        ("/dossi%C3%A9/", b"<h1>dossier</h1>\n"),
        ("/fifo-dir/", b"<h1>htm fallback</h1>\n"),  # index.html is a FIFO: skipped
    ],
)
def test_directory_serves_its_index(site: Site, target: str, body: bytes) -> None:
    result = fetch(site.config(), target)
    assert (result.status, result.body) == (200, body)
    assert result.header("Content-Type") == "text/html; charset=utf-8"


def test_directory_without_index_is_404_without_listing(site: Site) -> None:
    config = site.config(listing=False)
    assert fetch(config, "/noindex/").status == 404
    assert fetch(config, "/.well-known/").status == 404
    assert fetch(config, "/noindex/file.txt").status == 200


def test_listing_shows_only_what_may_be_served(site: Site) -> None:
    # A listing by default; it must not reveal what a request for it would 404.
    folder = site.root / "noindex"
    _write(folder / ".env", b"hidden\n")
    _write(folder / ".git" / "config", b"hidden\n")
    _write(folder / "<b>bold</b>.txt", b"x\n")
    os.mkfifo(folder / "a-fifo")
    (folder / "escape-link").symlink_to(site.tmp / "canary.txt")
    (folder / "www-secret-link").symlink_to(site.tmp / "www-secret", target_is_directory=True)
    result = fetch(site.config(), "/noindex/")
    assert result.status == 200
    assert result.header("Content-Type") == "text/html; charset=utf-8"
    assert b"file.txt" in result.body
    for hidden in (b".env", b".git", b"a-fifo", b"escape-link", b"www-secret-link"):
        assert hidden not in result.body
    assert b"<b>bold</b>" not in result.body  # names are HTML-escaped
    assert CANARY not in result.body


def test_missing_file_and_file_as_folder_are_404(site: Site) -> None:
    assert fetch(site.config(), "/missing.txt").status == 404
    assert fetch(site.config(), "/hello.txt/x").status == 404  # ENOTDIR is not a 500


def test_file_with_trailing_slash_is_404(site: Site) -> None:
    # No RFC decides it; nginx, Apache and http.server all answer 404 (ENOTDIR) here. Serving
    # the file makes every relative link in it resolve against /hello.txt/.
    assert fetch(site.config(), "/hello.txt/").status == 404


# --- non-regular files and odd names -------------------------------------------------------


@pytest.mark.timeout(10)
def test_fifo_is_404_and_never_hangs(site: Site) -> None:
    results: list[Result] = []
    worker = threading.Thread(
        target=lambda: results.append(fetch(site.config(), "/pipe")), daemon=True
    )
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "respond() blocked on a FIFO (open it with O_NONBLOCK)"
    assert [r.status for r in results] == [404]


@pytest.mark.parametrize(
    "target",
    [
        "/" + "a" * 300,
        "/sub/" + "b" * 300 + "/x",
        "/" + "%C3%A9" * 200,  # 400 bytes once encoded by the file system
        "/" + "/".join(["a" * 200] * 25),  # longer than PATH_MAX in few segments
    ],
)
def test_name_too_long_is_404(site: Site, target: str) -> None:
    assert fetch(site.config(), target).status == 404


# --- methods and targets -------------------------------------------------------------------


def test_absolute_form_target_is_served(site: Site) -> None:
    result = fetch(site.config(), "http://localhost/hello.txt")
    assert (result.status, result.body) == (200, b"hello, world\n")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("target", ["*", "ftp://localhost/hello.txt", "hello.txt"])
def test_asterisk_and_other_targets_are_400(site: Site, method: str, target: str) -> None:
    assert fetch(site.config(), target, method).status == 400


@pytest.mark.parametrize("target", ["*", "/", "/hello.txt"])
def test_options_is_204_with_allow(site: Site, target: str) -> None:
    result = fetch(site.config(), target, "OPTIONS")
    assert result.status == 204
    assert result.header("Allow") == ALLOW
    assert result.header("Content-Length") is None
    assert result.body == b""


def test_options_still_checks_the_path(site: Site) -> None:
    assert fetch(site.config(), "/a%00b", "OPTIONS").status == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE"])
def test_known_unsupported_methods_are_405(site: Site, method: str) -> None:
    result = fetch(site.config(), "/hello.txt", method)
    assert result.status == 405
    assert result.header("Allow") == ALLOW
    assert b"hello, world" not in result.body


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "get", "Get"])
def test_unknown_methods_are_501(site: Site, method: str) -> None:
    # Method names are case-sensitive (RFC 9110 §9.1): `get` is an unknown token.
    result = fetch(site.config(), "/hello.txt", method)
    assert result.status == 501
    assert b"hello, world" not in result.body


@pytest.mark.parametrize(
    "target",
    [
        "/hello.txt",
        "/big.bin",
        "/",
        "/sub",
        "/sub/",
        "/missing.txt",
        "/.env",
        "/../x",
        "/a%00b",
        "*",
    ],
)
def test_head_sends_the_headers_get_would_and_no_body(site: Site, target: str) -> None:
    get = fetch(site.config(), target, "GET")
    head = fetch(site.config(), target, "HEAD")
    assert head.status == get.status
    assert head.headers == get.headers  # Content-Length included
    assert head.body == b""
    if get.status == 200:
        assert int(get.header("Content-Length") or -1) == len(get.body) > 0


def test_head_on_a_large_file_closes_it(site: Site) -> None:
    reply = respond(Request("HEAD", "/big.bin", {"host": "localhost"}), site.config())
    assert reply.body == b""
    assert dict(reply.headers)["Content-Length"] == str(BIG_SIZE)
    reply.close()  # a no-op: the no_fd_leak fixture checks the file is already closed


# --- representation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/hello.txt", "text/plain; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/logo.PNG", "image/png"),
        ("/big.bin", "application/octet-stream"),
        ("/.well-known/security.txt", "text/plain; charset=utf-8"),
    ],
)
def test_content_type(site: Site, target: str, content_type: str) -> None:
    result = fetch(site.config(), target)
    assert result.status == 200
    assert result.header("Content-Type") == content_type


def test_json_content_type(site: Site) -> None:
    value = fetch(site.config(), "/data.json").header("Content-Type") or ""
    assert value.split(";")[0] == "application/json"


def test_file_headers(site: Site) -> None:
    path = site.root / "hello.txt"
    os.utime(path, ns=(KNOWN_MTIME_NS, KNOWN_MTIME_NS))
    result = fetch(site.config(), "/hello.txt")
    assert result.status == 200
    assert result.body == path.read_bytes()
    assert result.header("Content-Length") == str(path.stat().st_size)
    assert result.header("Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert result.header("Cache-Control") == "no-cache"


def test_etag_is_strong_and_stable(site: Site) -> None:
    first = fetch(site.config(), "/hello.txt").header("ETag") or ""
    second = fetch(site.config(), "/hello.txt").header("ETag")
    assert re.fullmatch(r'"[!#-~]+"', first), f"not a strong entity-tag: {first!r}"
    assert not first.startswith("W/")
    assert first == second


def test_etag_changes_with_the_file_version(site: Site) -> None:
    path = site.root / "hello.txt"
    os.utime(path, ns=(KNOWN_MTIME_NS, KNOWN_MTIME_NS))
    before = fetch(site.config(), "/hello.txt").header("ETag")
    os.utime(path, ns=(KNOWN_MTIME_NS + 1, KNOWN_MTIME_NS + 1))
    touched = fetch(site.config(), "/hello.txt").header("ETag")
    path.write_bytes(b"hello, world!\n")
    os.utime(path, ns=(KNOWN_MTIME_NS + 1, KNOWN_MTIME_NS + 1))
    grown = fetch(site.config(), "/hello.txt").header("ETag")
    assert len({before, touched, grown}) == 3


def test_etag_is_the_same_for_the_same_version_on_another_host(site: Site) -> None:
    # Two servers behind a load balancer: same bytes, same mtime, different inode and path.
    other = site.tmp / "other-host"
    _write(other / "hello.txt", (site.root / "hello.txt").read_bytes())
    for path in (site.root / "hello.txt", other / "hello.txt"):
        os.utime(path, ns=(KNOWN_MTIME_NS, KNOWN_MTIME_NS))
    mine = fetch(site.config(), "/hello.txt").header("ETag")
    theirs = fetch(Config(root=other), "/hello.txt").header("ETag")
    assert mine == theirs


def test_large_file_comes_back_as_a_file_slice(site: Site) -> None:
    config = site.config()
    assert config.small_file_bytes < BIG_SIZE
    reply = respond(Request("GET", "/big.bin", {"host": "localhost"}), config)
    try:
        assert reply.status == 200
        assert isinstance(reply.body, FileSlice)
        assert (reply.body.offset, reply.body.length, len(reply.body)) == (0, BIG_SIZE, BIG_SIZE)
        assert stat.S_ISREG(os.fstat(reply.body.fd).st_mode)
        assert dict(reply.headers)["Content-Length"] == str(BIG_SIZE)
        assert _read_slice(reply.body) == BIG
    finally:
        reply.close()


def test_small_file_threshold(site: Site) -> None:
    config = site.config(small_file_bytes=13)  # hello.txt is 13 bytes
    assert not fetch(config, "/hello.txt").sliced
    assert fetch(site.config(small_file_bytes=12), "/hello.txt").sliced


# --- the Host check ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LOCALHOST:8000",
        "127.0.0.1",
        "127.0.0.1:8000",
        "[::1]",
        "[::1]:8000",
        "app.localhost",
        "app.localhost:3000",
    ],
)
def test_loopback_names_are_allowed(site: Site, host: str) -> None:
    result = fetch(site.config(), "/hello.txt", host=host)
    assert (result.status, result.body) == (200, b"hello, world\n")
    assert host_allowed(Request("GET", "/", {"host": host}), site.config())


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "localhostx",
        "[::2]:8000",
        "10.0.0.1",
    ],
)
def test_other_names_are_refused_on_loopback(site: Site, host: str) -> None:
    result = fetch(site.config(), "/hello.txt", host=host)
    assert result.status == 400
    assert b"--allow-host" in result.body
    assert b"hello, world" not in result.body
    assert not host_allowed(Request("GET", "/", {"host": host}), site.config())


def test_allow_host_permits_a_name(site: Site) -> None:
    config = site.config(allow_hosts=("evil.example",))
    assert fetch(config, "/hello.txt", host="evil.example").status == 200
    assert fetch(config, "/hello.txt", host="EVIL.example:8000").status == 200
    assert fetch(config, "/hello.txt", host="other.example").status == 400


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_wildcard_bind_allows_any_host(site: Site, bind: str) -> None:
    config = site.config(bind=bind)
    assert fetch(config, "/hello.txt", host="evil.example").status == 200
    assert host_allowed(Request("GET", "/", {"host": "anything.example"}), config)


@pytest.mark.parametrize(
    "overrides", [{"bind": "::1"}, {"bind": "127.0.0.2"}, {"bind": "localhost"}]
)  # a Unix socket is not checked: see tests/test_listen.py
def test_loopback_binds_check_the_host(site: Site, overrides: dict[str, str]) -> None:
    config = site.config(**overrides)
    assert fetch(config, "/hello.txt", host="evil.example").status == 400
    assert fetch(config, "/hello.txt", host="localhost").status == 200


@pytest.mark.parametrize(
    "target", ["http://evil.example/hello.txt", "HTTP://evil.example:8000/hello.txt"]
)
def test_absolute_form_authority_is_checked_too(site: Site, target: str) -> None:
    assert fetch(site.config(), target, host="localhost").status == 400


def test_https_absolute_form_authority_is_checked_too(site: Site) -> None:
    # parse_target accepts https:// absolute-form, so its authority must pass the same check
    # as http:// (RFC 9112 §3.2.2: the target's authority overrides Host).
    target = "https://evil.example/hello.txt"
    assert fetch(site.config(), target, host="localhost").status == 400


# --- permission denied ---------------------------------------------------------------------


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads any file, so chmod 000 cannot cause EACCES",
)
def test_unreadable_file_is_403(site: Site) -> None:
    path = site.root / "locked.txt"
    _write(path, b"locked\n")
    path.chmod(0)
    try:
        result = fetch(site.config(), "/locked.txt")
    finally:
        path.chmod(0o644)
    assert result.status == 403
    assert b"locked" not in result.body


def _fail_open_for(monkeypatch: pytest.MonkeyPatch, name: str, error: OSError) -> None:
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path).endswith(name):
            raise error
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)  # the os module static.py uses


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_permission_error_is_403(site: Site, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    # Runs as root too: the OS error is simulated at os.open.
    _fail_open_for(monkeypatch, "hello.txt", PermissionError(code, os.strerror(code)))
    result = fetch(site.config(), "/hello.txt")
    assert result.status == 403
    assert b"hello, world" not in result.body


@pytest.mark.parametrize("code", [errno.EIO, errno.ELOOP, errno.ENXIO, errno.ENAMETOOLONG])
def test_no_os_error_becomes_a_500(site: Site, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    _fail_open_for(monkeypatch, "hello.txt", OSError(code, os.strerror(code)))
    assert 400 <= fetch(site.config(), "/hello.txt").status < 500


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM])
def test_out_of_descriptors_is_503_not_404(
    site: Site, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # The file exists; a 404 would tell caches it is gone. The trouble is ours and passing.
    _fail_open_for(monkeypatch, "hello.txt", OSError(code, os.strerror(code)))
    assert fetch(site.config(), "/hello.txt").status == 503


def test_symlink_loop_is_404(site: Site) -> None:
    (site.root / "loop-a").symlink_to(site.root / "loop-b")
    (site.root / "loop-b").symlink_to(site.root / "loop-a")
    assert fetch(site.config(), "/loop-a").status == 404
    assert fetch(site.config(follow_symlinks=True), "/loop-a").status == 404


# --- the site's own 404 page ---------------------------------------------------------------


@pytest.mark.parametrize("target", ["/missing.txt", "/../x", "/.env", "/outside-link"])
def test_custom_404_page_is_the_body_of_every_404(site: Site, target: str) -> None:
    _write(site.root / "404.html", b"<h1>lost?</h1>\n")
    get = fetch(site.config(), target)
    head = fetch(site.config(), target, "HEAD")
    assert (get.status, get.body) == (404, b"<h1>lost?</h1>\n")
    assert get.header("Content-Type") == "text/html; charset=utf-8"
    assert (head.status, head.headers, head.body) == (404, get.headers, b"")


def test_404_html_that_is_a_folder_is_ignored(site: Site) -> None:
    # Not a regular file, so not a page: a plain 404, never an exception (a 500) or a leaked fd.
    (site.root / "404.html").mkdir()
    result = fetch(site.config(), "/missing.txt")
    assert result.status == 404
    assert b"404" in result.body


@pytest.mark.timeout(10)
def test_404_html_that_is_a_fifo_is_ignored(site: Site) -> None:
    os.mkfifo(site.root / "404.html")
    assert fetch(site.config(), "/missing.txt").status == 404


def test_404_html_outside_the_root_is_not_used(site: Site) -> None:
    (site.root / "404.html").symlink_to(site.tmp / "canary.txt")
    result = fetch(site.config(), "/missing.txt")
    assert result.status == 404
    assert CANARY not in result.body


# --- precompressed siblings and the app shell never open a way out -------------------------


def test_precompressed_sibling_linking_out_of_the_root_is_not_served(site: Site) -> None:
    (site.root / "hello.txt.gz").symlink_to(site.tmp / "canary.txt")
    (site.root / "hello.txt.br").symlink_to(site.tmp / "www-secret" / "secret.txt")
    result = fetch(site.config(), "/hello.txt", headers={"accept-encoding": "gzip, br"})
    assert (result.status, result.body) == (200, b"hello, world\n")
    assert result.header("Content-Encoding") is None


def test_precompressed_sibling_is_served_with_its_coding(site: Site) -> None:
    sibling = _write(site.root / "style.css.gz", b"\x1f\x8b pretend gzip")
    original = (site.root / "style.css").stat().st_mtime_ns
    os.utime(sibling, ns=(original, original))  # not older than the original
    result = fetch(site.config(), "/style.css", headers={"accept-encoding": "gzip"})
    assert result.body == b"\x1f\x8b pretend gzip"
    assert result.header("Content-Encoding") == "gzip"
    assert result.header("Content-Type") == "text/css; charset=utf-8"
    plain = fetch(site.config(), "/style.css", headers={"accept-encoding": "identity"})
    assert plain.body == b"body { color: red }\n"
    assert plain.header("ETag") != result.header("ETag")


@pytest.mark.parametrize("target", ATTACKS)
def test_app_shell_never_leaks_the_canary(site: Site, target: str) -> None:
    result = fetch(site.config(spa=True), target, headers={"accept": "text/html"})
    assert CANARY not in result.body
    assert SECRET not in result.body
