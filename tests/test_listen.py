"""Where tinyhttp listens: IPv4, IPv6, dual-stack, names, Unix sockets.

Only loopback addresses (127.0.0.1, ::1) and Unix sockets in a temporary folder are ever
connected to; every socket call and every process has a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tinyhttp.config import Config
from tinyhttp.listen import ListenError, open_listener
from tinyhttp.message import Request
from tinyhttp.urls import is_wildcard, url_for

from .conftest import INDEX, TIMEOUT, Reader, Running, host_allowed
from .support import needs_dual_stack, needs_ipv6, needs_unix, running, unix_socket_path

CURL = shutil.which("curl")


needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    # --noproxy: a proxy from the environment must never see (or answer) these requests.
    command = [CURL, "--silent", "--show-error", "--noproxy", "*", "--max-time", "5", *args]
    return subprocess.run(command, capture_output=True, timeout=TIMEOUT + 5, check=False)


def get_front_page(family: int, address: str | tuple[str, int], host: str) -> bytes:
    """GET / over a fresh socket of the given family; the body of a 200, or fail."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = Reader(sock).response()
    assert response.status == 200, response
    return response.body


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    with unix_socket_path(tmp_path) as path:
        yield path


# --- the three families, as curl reaches them ----------------------------------------------


@needs_curl
def test_curl_over_ipv4_gets_the_front_page(serve: Callable[..., Running]) -> None:
    run = serve()
    assert run.url == f"http://127.0.0.1:{run.port}/"
    result = curl(f"http://127.0.0.1:{run.port}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX


@needs_curl
@needs_ipv6
def test_curl_over_ipv6_gets_the_front_page(serve: Callable[..., Running]) -> None:
    run = serve(bind="::1")
    assert run.url == f"http://[::1]:{run.port}/"
    result = curl("-g", f"http://[::1]:{run.port}/")  # -g: the brackets are not a glob
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX


@needs_curl
@needs_unix
@pytest.mark.parametrize("url", ["http://x/", "http://localhost/", "http://evil.example/"])
def test_curl_over_a_unix_socket_gets_the_front_page(
    serve: Callable[..., Running], sock_path: Path, url: str
) -> None:
    run = serve(unix=str(sock_path))
    assert run.url == f"unix:{sock_path}"
    result = curl("--unix-socket", str(sock_path), url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX


# --- the same without curl, and dual-stack -------------------------------------------------


def test_ipv4_socket_gets_the_front_page(serve: Callable[..., Running]) -> None:
    run = serve()
    assert get_front_page(socket.AF_INET, ("127.0.0.1", run.port), "127.0.0.1") == INDEX


@needs_ipv6
def test_ipv6_socket_gets_the_front_page(serve: Callable[..., Running]) -> None:
    run = serve(bind="::1")
    assert run.server.listener.family == socket.AF_INET6
    assert get_front_page(socket.AF_INET6, ("::1", run.port), "[::1]") == INDEX


@needs_unix
def test_unix_socket_gets_the_front_page_for_any_host(
    serve: Callable[..., Running], sock_path: Path
) -> None:
    serve(unix=str(sock_path))
    assert get_front_page(socket.AF_UNIX, str(sock_path), "x") == INDEX
    assert sock_path.is_socket()


@needs_dual_stack
def test_dual_stack_bind_answers_ipv4_and_ipv6(serve: Callable[..., Running]) -> None:
    run = serve(bind="::")
    listener = run.server.listener
    assert listener.family == socket.AF_INET6
    assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    assert run.url == f"http://[::1]:{run.port}/"
    assert get_front_page(socket.AF_INET, ("127.0.0.1", run.port), "127.0.0.1") == INDEX
    assert get_front_page(socket.AF_INET6, ("::1", run.port), "[::1]") == INDEX


@needs_dual_stack
@needs_curl
def test_curl_reaches_a_dual_stack_bind_both_ways(serve: Callable[..., Running]) -> None:
    run = serve(bind="::")
    for url in (f"http://127.0.0.1:{run.port}/", f"http://[::1]:{run.port}/"):
        result = curl("-g", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == INDEX


# --- open_listener and url_for -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "url_host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),  # a wildcard prints the loopback URL
        pytest.param("::1", "[::1]", marks=needs_ipv6),
        pytest.param("[::1]", "[::1]", marks=needs_ipv6),  # as written in URLs
        pytest.param("::", "[::1]", marks=needs_ipv6),
    ],
)
def test_url_for_each_address(bind: str, url_host: str) -> None:
    with open_listener(bind, 0) as sock:
        assert not sock.getblocking(), "accept() must never stall the loop"
        port = sock.getsockname()[1]
        assert url_for(sock.family, sock.getsockname()) == f"http://{url_host}:{port}/"


def test_a_host_name_is_resolved() -> None:
    with open_listener("localhost", 0) as sock:
        host = sock.getsockname()[0]
        assert host in ("127.0.0.1", "::1")
        assert url_for(sock.family, sock.getsockname()).startswith(("http://127.0.0.1:", "http://[::1]:"))


@needs_unix
def test_url_for_a_unix_socket(sock_path: Path) -> None:
    with open_listener("127.0.0.1", 0, unix=str(sock_path)) as sock:
        assert sock.family == socket.AF_UNIX
        assert url_for(sock.family, sock.getsockname()) == f"unix:{sock_path}"


@pytest.mark.parametrize(
    ("bind", "wildcard"),
    [
        ("0.0.0.0", True),
        ("::", True),
        ("[::]", True),
        ("0::0", True),
        ("", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("192.0.2.7", False),
    ],
)
def test_is_wildcard(bind: str, wildcard: bool) -> None:
    assert is_wildcard(bind) is wildcard


def test_port_in_use_is_one_clear_message() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as error:
            open_listener("127.0.0.1", port)
    assert str(error.value) == f"port {port} is in use; try --port 0"


@pytest.mark.parametrize(
    ("bind", "words"),
    [
        ("no-such-host.invalid", "cannot resolve"),
        ("192.0.2.7", "not an address of this machine"),  # TEST-NET-1: bound, never sent to
    ],
)
def test_bad_addresses_are_one_clear_message(bind: str, words: str) -> None:
    with pytest.raises(ListenError) as error:
        open_listener(bind, 0)
    assert words in str(error.value)
    assert "--bind 127.0.0.1" in str(error.value)


# --- Unix sockets: stale, live, not a socket -----------------------------------------------


def leave_stale_socket(path: Path) -> None:
    """What a killed server leaves: a socket file nobody listens on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    assert path.is_socket()


@needs_unix
def test_a_stale_socket_file_is_replaced(sock_path: Path) -> None:
    leave_stale_socket(sock_path)
    with open_listener("127.0.0.1", 0, unix=str(sock_path)) as sock:
        sock.settimeout(TIMEOUT)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(TIMEOUT)
            client.connect(str(sock_path))
            accepted, _ = sock.accept()
            accepted.close()


@needs_unix
def test_a_live_socket_file_is_refused(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(sock_path))
        live.listen()
        with pytest.raises(ListenError) as error:
            open_listener("127.0.0.1", 0, unix=str(sock_path))
        assert str(error.value) == (
            f"unix:{sock_path} is in use by a running server; choose another --unix path"
        )
        assert sock_path.is_socket(), "the live server's socket file was removed"


@needs_unix
def test_a_file_that_is_not_a_socket_is_never_removed(sock_path: Path) -> None:
    # connect() to a regular file is refused just like a stale socket: it must not be unlinked.
    sock_path.write_bytes(b"precious")
    with pytest.raises(ListenError) as error:
        open_listener("127.0.0.1", 0, unix=str(sock_path))
    assert "is not a socket" in str(error.value)
    assert sock_path.read_bytes() == b"precious"


@needs_unix
def test_a_path_too_long_is_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ListenError) as error:
        open_listener("127.0.0.1", 0, unix=str(tmp_path / ("x" * 200)))
    assert "too long" in str(error.value)


# --- the Host check does not apply on a Unix socket ----------------------------------------


@pytest.mark.parametrize("target", ["/", "http://evil.example/"])
def test_host_check_is_off_on_a_unix_socket(target: str) -> None:
    # No browser can reach a Unix socket, so DNS rebinding cannot; local processes that may
    # open the socket file could read the files anyway.
    request = Request("GET", target, {"host": "evil.example"})
    assert host_allowed(request, Config(unix="/run/t.sock"))
    assert not host_allowed(request, Config(bind="127.0.0.1"))


# --- the command line ----------------------------------------------------------------------


def tinyhttp(*args: str) -> list[str]:
    return ["-m", "tinyhttp", *args, "--quiet"]


@needs_unix
def test_cli_replaces_a_stale_socket_and_removes_its_own_on_exit(
    site: Path, sock_path: Path
) -> None:
    leave_stale_socket(sock_path)
    with running(*tinyhttp(str(site), "--unix", str(sock_path))) as server:
        root = os.path.realpath(site)
        assert server.next_line() == f"Serving {root} at unix:{sock_path} (Ctrl-C to stop)"
        assert get_front_page(socket.AF_UNIX, str(sock_path), "x") == INDEX
        assert server.stop(signal.SIGTERM) == 0
        assert server.stdout[-1] == "Stopped."
        assert server.stderr == []
    assert not sock_path.exists(), "the socket file was left behind"


@needs_unix
def test_cli_refuses_a_live_socket_with_one_line(
    serve: Callable[..., Running], site: Path, sock_path: Path
) -> None:
    serve(unix=str(sock_path))
    with running(*tinyhttp(str(site), "--unix", str(sock_path))) as second:
        assert second.finish() == 2
        assert second.stdout == []
        assert second.stderr == [
            f"tinyhttp: unix:{sock_path} is in use by a running server; choose another --unix path"
        ]
    # The first server still owns its file and still answers.
    assert get_front_page(socket.AF_UNIX, str(sock_path), "localhost") == INDEX


@needs_ipv6
def test_cli_prints_ipv6_in_brackets_without_a_warning(site: Path) -> None:
    with running(*tinyhttp(str(site), "--bind", "::1", "--port", "0")) as server:
        line = server.next_line()
        assert line.startswith(f"Serving {os.path.realpath(site)} at http://[::1]:"), line
        assert line.endswith("/ (Ctrl-C to stop)"), line
        port = int(line.split("]:")[1].split("/")[0])
        assert get_front_page(socket.AF_INET6, ("::1", port), "[::1]") == INDEX
        assert server.stop() == 0
        assert server.stderr == []


def test_cli_warns_for_every_spelling_of_all_interfaces(site: Path) -> None:
    # `--bind 0` is 0.0.0.0 to the resolver: the warning follows the bound address.
    with running(*tinyhttp(str(site), "--bind", "0", "--port", "0")) as server:
        line = server.next_line()
        assert "also reachable from the network" in line, line
        assert server.stop() == 0
        assert len(server.stderr) == 1
        assert "warning" in server.stderr[0]
