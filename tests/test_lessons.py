"""The socket lessons in scripts/, each run as a process against a live server on loopback.

raw_client.py over IPv4, IPv6 and a Unix socket; blocking_server.py stalling a second client
while tinyhttp does not; udp_echo.py delivering every message exactly once, in order, through a
server that drops and duplicates on purpose. No sleeps: every wait is a socket timeout or a
poll with a deadline.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import INDEX, TIMEOUT, Reader, Running
from .support import Process, needs_ipv6, needs_unix, run, running, unix_socket_path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
RAW_CLIENT = str(SCRIPTS / "raw_client.py")
BLOCKING_SERVER = str(SCRIPTS / "blocking_server.py")
UDP_ECHO = str(SCRIPTS / "udp_echo.py")

# How long a stalled client is watched getting nothing. Long enough that a server that could
# answer would have; the test asserts the silence, so it cannot be a poll.
STALL = 1.0


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    with unix_socket_path(tmp_path) as path:
        yield path


# --- raw_client.py: the three families -----------------------------------------------------


def raw_client(*args: str) -> tuple[int, bytes, str]:
    result = run(RAW_CLIENT, *args)
    return result.returncode, result.stdout, result.stderr.decode()


def check_front_page(status: int, output: bytes, errors: str) -> None:
    assert status == 0, errors
    assert output.startswith(b"HTTP/1.1 200 OK\r\n"), output[:200]
    assert output.endswith(b"\r\n\r\n" + INDEX)


def test_raw_client_over_ipv4(serve: Callable[..., Running]) -> None:
    check_front_page(*raw_client(f"http://127.0.0.1:{serve().port}/"))


@needs_ipv6
def test_raw_client_over_ipv6(serve: Callable[..., Running]) -> None:
    check_front_page(*raw_client(f"http://[::1]:{serve(bind='::1').port}/"))


@needs_unix
@pytest.mark.parametrize("url", ["http://x/", "http://localhost/"])
def test_raw_client_over_a_unix_socket(
    serve: Callable[..., Running], sock_path: Path, url: str
) -> None:
    serve(unix=str(sock_path))
    check_front_page(*raw_client("--unix", str(sock_path), url))


@needs_unix
def test_raw_client_reports_a_missing_unix_socket(sock_path: Path) -> None:
    status, output, errors = raw_client("--unix", str(sock_path), "http://x/")
    assert status == 1
    assert output == b""
    assert errors.startswith(f"raw_client: {sock_path}:")
    assert "Traceback" not in errors


@pytest.mark.parametrize(
    "args", [["--unix", "/tmp/x.sock"], ["--unix"], ["--unix", "/tmp/x.sock", "ftp://x/"]], ids=str
)
def test_raw_client_unix_usage_mistakes(args: list[str]) -> None:
    status, output, errors = raw_client(*args)
    assert status == 2
    assert output == b""
    assert errors.startswith("usage:")


# --- blocking_server.py: one client at a time ----------------------------------------------

BLOCKING_URL = re.compile(r"Serving (http://127\.0\.0\.1:(\d+)/) one client at a time .*")


def blocking_port(server: Process) -> int:
    match = BLOCKING_URL.fullmatch(server.next_line())
    assert match is not None, server.stdout
    return int(match[2])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def get(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")


def test_blocking_server_answers_http_and_stops_after_n_clients() -> None:
    with running(BLOCKING_SERVER, "--port", "0", "--max-clients", "1") as server:
        port = blocking_port(server)
        status, output, errors = raw_client(f"http://127.0.0.1:{port}/hello")
        assert status == 0, errors
        assert output.startswith(b"HTTP/1.1 200 OK\r\n")
        assert output.endswith(b"\r\n\r\nHello from blocking_server.py, client 1.\n")
        assert server.finish() == 0
        assert server.stdout[-1] == "Stopped."
        assert server.stderr == []


def test_blocking_server_stalls_a_second_client() -> None:
    with running(BLOCKING_SERVER, "--port", "0", "--max-clients", "2") as server:
        port = blocking_port(server)
        with connect(port) as silent, connect(port) as waiting:
            # The first client connects and says nothing; the server sits in its recv().
            server.line_where(lambda line: line.startswith("accept(): client 1 "))
            get(waiting)  # a whole request, which nobody reads yet
            waiting.settimeout(STALL)
            with pytest.raises(TimeoutError):
                waiting.recv(1)  # stalled: accept() has not even been called for it
            # The first client speaks at last: it is answered, and only then the second.
            waiting.settimeout(TIMEOUT)
            get(silent)
            first, second = Reader(silent).response(), Reader(waiting).response()
        assert first.body == b"Hello from blocking_server.py, client 1.\n"
        assert second.body == b"Hello from blocking_server.py, client 2.\n"
        assert server.finish() == 0


def test_tinyhttp_does_not_stall_a_second_client(server: Running) -> None:
    with server.connect() as silent, server.connect() as waiting:
        silent.sendall(b"GET / HT")  # half a request, and then nothing
        get(waiting)
        assert Reader(waiting).response().body == INDEX  # select() saw it was ready
        silent.sendall(b"TP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert Reader(silent).response().body == INDEX


def test_blocking_server_stops_on_ctrl_c() -> None:
    with running(BLOCKING_SERVER, "--port", "0") as server:
        blocking_port(server)
        assert server.stop() == 0  # SIGINT, as Ctrl-C sends it
        assert server.stdout[-1] == "Stopped."
        assert server.stderr == []


def test_blocking_server_port_in_use_is_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run(BLOCKING_SERVER, "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1
    assert b"try --port 0" in result.stderr


# --- udp_echo.py: you are the reliability layer now ----------------------------------------

UDP_LINE = re.compile(r"Echoing UDP datagrams on 127\.0\.0\.1 port (\d+) \(Ctrl-C to stop\)")


def udp_port(server: Process) -> int:
    match = UDP_LINE.fullmatch(server.next_line())
    assert match is not None, server.stdout
    return int(match[1])


def udp_client(port: int, *args: str) -> tuple[int, list[str], str]:
    result = run(UDP_ECHO, "client", "--port", str(port), *args, timeout=60)
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


def test_udp_echo_delivers_each_message_once_in_order_despite_losses() -> None:
    count = 30
    options = ("--drop", "0.3", "--duplicate", "0.3", "--seed", "6")
    with running(UDP_ECHO, "server", "--port", "0", *options) as server:
        port = udp_port(server)
        status, lines, errors = udp_client(port, "--count", str(count), "--retries", "20")
        assert status == 0, errors
        echoes = [line for line in lines if line.startswith("echo #")]
        assert echoes == [f"echo #{n}: {n} message {n}" for n in range(1, count + 1)]
        # The reliability layer had work to do, both kinds.
        assert any(line.startswith("no echo of #") for line in lines), lines
        assert any(line.startswith("dropped a duplicate echo") for line in lines), lines
        assert lines[-1].startswith(f"all {count} echoed once, in order:")
        assert server.stop() == 0
        assert any(line.endswith("dropped on purpose") for line in server.stdout)
        assert any(line.endswith("echoed twice, on purpose") for line in server.stdout)
        assert server.stdout[-1] == "Stopped."
        assert server.stderr == []


def test_udp_echo_without_losses_needs_no_resend() -> None:
    with running(UDP_ECHO, "server", "--port", "0") as server:
        status, lines, errors = udp_client(udp_port(server), "--count", "5", "--timeout", "5")
        assert status == 0, errors
        assert lines[-1] == "all 5 echoed once, in order: 0 resent, 0 duplicates dropped"
        assert server.stop() == 0


def test_udp_client_gives_up_after_bounded_retries() -> None:
    with running(UDP_ECHO, "server", "--port", "0", "--drop", "1") as server:
        port = udp_port(server)
        status, lines, errors = udp_client(port, "--retries", "2", "--timeout", "0.05")
        assert status == 1
        assert errors == "udp_echo: gave up on #1 after 2 resends\n"
        assert [line for line in lines if line.startswith("no echo")] == [
            "no echo of #1 in 0.05 s: sending it again (1)",
            "no echo of #1 in 0.05 s: sending it again (2)",
        ]
        assert server.stop() == 0


@pytest.mark.parametrize(
    "args", [["server", "--drop", "1.5"], ["server", "--duplicate", "x"], ["fly"], []], ids=str
)
def test_udp_echo_usage_mistakes_exit_2(args: list[str]) -> None:
    result = run(UDP_ECHO, *args)
    assert result.returncode == 2
    assert b"usage:" in result.stderr
    assert b"Traceback" not in result.stderr
