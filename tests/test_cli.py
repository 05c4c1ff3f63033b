"""The command line and start-up, driven as a real process: `python -m tinyhttp`.

Every server listens on port 0 (the real port is read from its first line), every wait has a
deadline, and every process is killed in the fixture's teardown whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import tinyhttp

TIMEOUT = 10.0  # every wait, socket call and request gives up after this long
HELLO = b"hello, world\r\n\x00\xff binary too\n"
URL_LINE = re.compile(
    r"Serving (?P<root>.+) at http://127\.0\.0\.1:(?P<port>\d+)/ \(Ctrl-C to stop\)"
)
# peer - - [day/Mon/year:hh:mm:ss +zone] "request line" status bytes "referer" "agent" 1.23ms
ACCESS_LINE = re.compile(
    r"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" \d+(\.\d+)?ms'
)
SIGNALS = [signal.SIGTERM, signal.SIGINT]


class Tinyhttp:
    """One tinyhttp process; its stdout and stderr are read by threads, line by line."""

    def __init__(self, command: list[str], cwd: Path | None = None) -> None:
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.port = 0
        self.url = ""

    def _read(self, stream: object, lines: list[str], announce: bool) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if announce:
                self._lines.put(line)
        if announce:
            self._lines.put(None)  # EOF

    def next_line(self, timeout: float = TIMEOUT) -> str:
        """The next stdout line, waiting at most `timeout` seconds for it."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no stdout line within {timeout} s; stderr so far: {self.stderr}")
        if line is None:
            self.popen.wait(TIMEOUT)
            pytest.fail(f"stdout closed (exit {self.popen.returncode}); stderr: {self.stderr}")
        return line

    def started(self, pattern: re.Pattern[str] = URL_LINE) -> re.Match[str]:
        """Read the first line, check its form, and remember the port it names."""
        line = self.next_line()
        match = pattern.fullmatch(line)
        assert match is not None, f"unexpected first line {line!r}; stderr: {self.stderr}"
        self.port = int(match["port"])
        self.url = f"http://127.0.0.1:{self.port}/"
        return match

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the exit and for both streams to be read to the end; the exit status."""
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.send(signum)
        return self.finish()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(TIMEOUT)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def module_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinyhttp", *args]


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    """A folder to serve, with one small file (binary bytes, to check exactness)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    return root


@pytest.fixture
def launch() -> Iterator[Callable[..., Tinyhttp]]:
    """Start tinyhttp processes; whatever happens, none outlives the test."""
    started: list[Tinyhttp] = []

    def start(*args: str, cwd: Path | None = None, command: list[str] | None = None) -> Tinyhttp:
        process = Tinyhttp(command if command is not None else module_command(*args), cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session that never goes through a proxy from the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run tinyhttp to completion (for arguments that must make it exit at once)."""
    return subprocess.run(
        module_command(*args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2, exactly one line on stderr, nothing on stdout, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n"), repr(result.stderr)
    assert len(result.stderr.splitlines()) == 1, repr(result.stderr)
    return result.stderr.strip()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll `condition` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            return True
    except (ConnectionRefusedError, ConnectionResetError):  # reset: closed mid-handshake
        return False


def unread_bytes_at_server(server_port: int, client_port: int) -> int | None:
    """Linux: bytes the server side of this TCP connection has not recv()'d yet."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return int(queues.split(":")[1], 16)
    return None


def send_head_part(port: int, part: bytes) -> socket.socket:
    """Open a connection, send the start of a request head, and wait until the server has
    read it (so it is a request in flight, not an idle connection)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see that the server has read the bytes")
    sock = connect(port)
    sock.sendall(part)
    client_port = sock.getsockname()[1]
    assert wait_until(lambda: unread_bytes_at_server(port, client_port) == 0), (
        "the server never read the first part of the request"
    )
    return sock


def get_hello(http: requests.Session, server: Tinyhttp) -> None:
    """The port is real and the folder is served: GET a file and compare its bytes."""
    response = http.get(server.url + "hello.txt", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.content == HELLO


# --- the first line, and what is served ----------------------------------------------------


def test_first_line_names_the_real_folder_and_a_working_url(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch(str(docroot), "--port", "0")
    line = server.next_line()
    match = URL_LINE.fullmatch(line)
    assert match is not None, line
    port = int(match["port"])
    assert 0 < port < 65536
    root = os.path.realpath(docroot)
    assert line == f"Serving {root} at http://127.0.0.1:{port}/ (Ctrl-C to stop)"
    server.port, server.url = port, f"http://127.0.0.1:{port}/"
    get_hello(http, server)
    assert server.stop() == 0
    assert server.stdout[-1] == "Stopped."


def test_relative_and_symlinked_folder_is_printed_as_its_real_absolute_path(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    link = docroot.parent / "link"
    link.symlink_to(docroot, target_is_directory=True)
    server = launch("link", "--port", "0", cwd=docroot.parent)
    assert server.started()["root"] == os.path.realpath(docroot)
    get_hello(http, server)
    assert server.stop() == 0


def test_console_script_serves_too(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    script = Path(sys.executable).with_name("tinyhttp")
    if not script.exists():
        pytest.skip("the tinyhttp console script is not installed next to this interpreter")
    server = launch(command=[str(script), str(docroot), "--port", "0"])
    assert server.started()["root"] == os.path.realpath(docroot)
    get_hello(http, server)
    assert server.stop() == 0
    assert server.stdout[-1] == "Stopped."


def test_no_argument_serves_www_when_it_exists(
    launch: Callable[..., Tinyhttp], tmp_path: Path, http: requests.Session
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_bytes(HELLO)
    (tmp_path / "outside.txt").write_bytes(b"not in www\n")
    server = launch("--port", "0", cwd=tmp_path)
    assert server.started()["root"] == os.path.realpath(tmp_path / "www")
    get_hello(http, server)
    assert http.get(server.url + "outside.txt", timeout=TIMEOUT).status_code == 404
    assert server.stop() == 0


def test_no_argument_serves_the_current_folder_without_www(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch("--port", "0", cwd=docroot)
    assert server.started()["root"] == os.path.realpath(docroot)
    get_hello(http, server)
    assert server.stop() == 0


def test_www_that_is_a_file_is_not_taken_for_the_folder(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    (docroot / "www").write_bytes(b"a file named www\n")
    server = launch("--port", "0", cwd=docroot)
    assert server.started()["root"] == os.path.realpath(docroot)
    get_hello(http, server)
    assert server.stop() == 0


@pytest.mark.parametrize("flag", ["-d", "--directory"])
def test_directory_flag_works_like_the_positional(
    launch: Callable[..., Tinyhttp],
    docroot: Path,
    tmp_path: Path,
    http: requests.Session,
    flag: str,
) -> None:
    (tmp_path / "www").mkdir()  # must not win over the flag
    server = launch(flag, str(docroot), "--port", "0", cwd=tmp_path)
    assert server.started()["root"] == os.path.realpath(docroot)
    get_hello(http, server)
    assert server.stop() == 0


def test_every_limit_has_a_flag(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch(
        str(docroot), "--port", "0",
        "--max-connections", "50", "--max-head-bytes", "8192", "--max-header-count", "50",
        "--max-body-bytes", "1000", "--head-timeout", "5", "--idle-timeout", "2.5",
        "--send-timeout", "10", "--drain-timeout", "1",
    )  # fmt: skip
    server.started()
    get_hello(http, server)
    assert server.stop() == 0


# --- stopping ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_stops_with_status_0_and_one_line(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session, signum: int
) -> None:
    server = launch(str(docroot), "--port", "0")
    server.started()
    get_hello(http, server)  # also proves the loop (and its signal handlers) is running
    assert server.stop(signum) == 0, server.stderr
    assert server.stdout[-1] == "Stopped."
    assert server.stdout.count("Stopped.") == 1
    assert len(server.stdout) == 2, server.stdout
    assert not any("Traceback" in line for line in server.stderr), server.stderr


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_right_when_the_first_line_appears_still_stops_gracefully(
    docroot: Path, signum: int
) -> None:
    """A supervisor may stop the server as soon as it has announced itself. Here the signal
    arrives the moment the first line is flushed: it must still mean "stop, exit 0"."""
    wrapper = (
        "import os, runpy, sys\n"
        "class Tripwire:\n"
        "    def __init__(self, stream): self.stream, self.fired = stream, False\n"
        "    def write(self, text): return self.stream.write(text)\n"
        "    def flush(self):\n"
        "        self.stream.flush()\n"
        "        if not self.fired:\n"
        "            self.fired = True\n"
        f"            os.kill(os.getpid(), {int(signum)})\n"
        "    def __getattr__(self, name): return getattr(self.stream, name)\n"
        "sys.stdout = Tripwire(sys.stdout)\n"
        f"sys.argv = ['tinyhttp', {str(docroot)!r}, '--port', '0']\n"
        "runpy.run_module('tinyhttp', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    lines = result.stdout.splitlines()
    assert lines and URL_LINE.fullmatch(lines[0]), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert lines[-1] == "Stopped."


def test_request_in_flight_during_sigterm_completes(
    launch: Callable[..., Tinyhttp], docroot: Path
) -> None:
    server = launch(str(docroot), "--port", "0")
    server.started()
    idle = connect(server.port)  # an idle keep-alive connection: closed at once on SIGTERM
    half = b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with idle, send_head_part(server.port, half) as sock:
        server.send(signal.SIGTERM)
        # Stopping begins with closing the listener: wait for that, then finish the request.
        assert wait_until(lambda: not listening(server.port)), "still accepting after SIGTERM"
        assert server.popen.poll() is None, "exited with a request in flight"
        assert read_to_eof(idle) == b""
        sock.sendall(b"User-Agent: test\r\n\r\n")
        raw = read_to_eof(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", raw[:200]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["connection"] == "close"
    assert headers["content-length"] == str(len(HELLO))
    assert body == HELLO
    assert server.finish() == 0, server.stderr
    assert server.stdout[-1] == "Stopped."


def test_pipelined_request_in_flight_during_sigterm_completes(
    launch: Callable[..., Tinyhttp], docroot: Path
) -> None:
    """The second of two pipelined requests has half arrived when SIGTERM comes: it is in
    flight too (not an idle keep-alive connection), so it must still be answered."""
    server = launch(str(docroot), "--port", "0")
    server.started()
    request = b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with send_head_part(server.port, request + b"\r\n" + request) as sock:
        first = b""
        while not first.endswith(b"\r\n\r\n" + HELLO):
            chunk = sock.recv(65536)
            assert chunk, f"closed before the first answer: {first!r}"
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        server.send(signal.SIGTERM)
        assert wait_until(lambda: not listening(server.port)), "still accepting after SIGTERM"
        sock.sendall(b"\r\n")
        try:
            raw = read_to_eof(sock)
        except ConnectionResetError:
            raw = b"(connection reset)"
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), f"second request not answered: {raw[:200]!r}"
    assert b"\r\nConnection: close\r\n" in raw
    assert raw.endswith(b"\r\n\r\n" + HELLO)
    assert server.finish() == 0, server.stderr
    assert server.stdout[-1] == "Stopped."


def test_drain_deadline_ends_a_request_that_never_completes(
    launch: Callable[..., Tinyhttp], docroot: Path
) -> None:
    server = launch(str(docroot), "--port", "0", "--drain-timeout", "0.3")
    server.started()
    with send_head_part(server.port, b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n") as sock:
        started = time.monotonic()
        server.send(signal.SIGTERM)
        assert server.finish() == 0, server.stderr
        assert time.monotonic() - started < 5, "the drain deadline was not kept"
        assert server.stdout[-1] == "Stopped."
        with contextlib.suppress(ConnectionResetError):
            assert read_to_eof(sock) == b""  # closed without an answer


def test_second_sigint_exits_at_once(launch: Callable[..., Tinyhttp], docroot: Path) -> None:
    server = launch(str(docroot), "--port", "0", "--drain-timeout", "60")
    server.started()
    with send_head_part(server.port, b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        server.send(signal.SIGINT)
        assert wait_until(lambda: not listening(server.port)), "still accepting after SIGINT"
        assert server.popen.poll() is None, "exited with a request in flight"
        server.send(signal.SIGINT)
        status = server.finish(timeout=5)
    assert status != 0
    assert "Stopped." not in server.stdout
    assert not any("Traceback" in line for line in server.stderr), server.stderr


# --- mistakes: one line, exit 2 ------------------------------------------------------------


def test_port_in_use(docroot: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.settimeout(TIMEOUT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(str(docroot), "--port", str(port))
    message = assert_usage_error(result)
    assert f"port {port} is in use" in message
    assert "--port 0" in message


@pytest.mark.parametrize("port", ["70000", "65536", "abc", "-1", "8e3", ""])
def test_port_out_of_range(docroot: Path, port: str) -> None:
    message = assert_usage_error(run_cli(str(docroot), "--port", port))
    assert "port" in message


def test_missing_directory(tmp_path: Path) -> None:
    message = assert_usage_error(run_cli(str(tmp_path / "nope"), "--port", "0"))
    assert "nope" in message


def test_missing_directory_flag(tmp_path: Path) -> None:
    message = assert_usage_error(run_cli("-d", str(tmp_path / "nope"), "--port", "0"))
    assert "nope" in message


def test_a_file_is_not_a_directory(docroot: Path) -> None:
    message = assert_usage_error(run_cli(str(docroot / "hello.txt"), "--port", "0"))
    assert "hello.txt" in message


def test_digits_for_a_directory_suggest_port(tmp_path: Path) -> None:
    message = assert_usage_error(run_cli("8080", cwd=tmp_path))
    assert "did you mean --port 8080?" in message


def test_digits_that_are_a_directory_are_served(
    launch: Callable[..., Tinyhttp], tmp_path: Path, http: requests.Session
) -> None:
    (tmp_path / "8080").mkdir()
    (tmp_path / "8080" / "hello.txt").write_bytes(HELLO)
    server = launch("8080", "--port", "0", cwd=tmp_path)
    assert server.started()["root"] == os.path.realpath(tmp_path / "8080")
    get_hello(http, server)
    assert server.stop() == 0


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any folder"
)
def test_unreadable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        message = assert_usage_error(run_cli(str(locked), "--port", "0"))
    finally:
        locked.chmod(0o755)
    assert "locked" in message


@pytest.mark.parametrize(
    "args",
    [
        ["--frobnicate"],
        ["--port"],
        ["-x", "1"],
        ["one", "two"],
        ["--max-connections", "0"],
        ["--idle-timeout", "soon"],
    ],
    ids=" ".join,
)
def test_bad_flags_give_one_line(docroot: Path, args: list[str]) -> None:
    message = assert_usage_error(run_cli(*args, cwd=docroot))
    assert message.startswith("tinyhttp:")


def test_unknown_host_name_gives_one_line(docroot: Path) -> None:
    message = assert_usage_error(run_cli(str(docroot), "--bind", "no-such-host.invalid"))
    assert "--bind" in message


# --- binding -------------------------------------------------------------------------------


def test_wildcard_bind_warns_and_says_so(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch(str(docroot), "--bind", "0.0.0.0", "--port", "0")
    line = server.next_line()
    match = re.fullmatch(r"Serving (.+) at http://127\.0\.0\.1:(\d+)/ \(Ctrl-C to stop\)(.*)", line)
    assert match is not None, line
    assert match[1] == os.path.realpath(docroot)
    assert "reachable from the network" in match[3], line
    server.port = int(match[2])
    server.url = f"http://127.0.0.1:{server.port}/"
    get_hello(http, server)
    assert server.stop() == 0
    warnings = [text for text in server.stderr if not ACCESS_LINE.fullmatch(text)]
    assert len(warnings) == 1, server.stderr
    assert "warning" in warnings[0].lower()
    assert "network" in warnings[0]


def test_loopback_bind_prints_no_warning(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch(str(docroot), "--port", "0", "--quiet")
    server.started()
    get_hello(http, server)
    assert server.stop() == 0
    assert server.stderr == []


def test_dual_stack_bind_answers_ipv4(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        pytest.skip("cannot bind an IPv6 socket here")
    server = launch(str(docroot), "--bind", "::", "--port", "0")
    line = server.next_line()
    match = re.fullmatch(r"Serving (.+) at http://\[::1\]:(\d+)/ \(Ctrl-C to stop\).*", line)
    assert match is not None, line
    assert "reachable from the network" in line
    server.port = int(match[2])
    server.url = f"http://127.0.0.1:{server.port}/"  # IPv4 to a `::` socket: V6ONLY is off
    get_hello(http, server)
    assert server.stop() == 0


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_socket(launch: Callable[..., Tinyhttp], docroot: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.sock"
    server = launch(str(docroot), "--unix", str(path))
    line = server.next_line()
    assert line == f"Serving {os.path.realpath(docroot)} at unix:{path} (Ctrl-C to stop)"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:200]
    assert raw.endswith(b"\r\n\r\n" + HELLO)
    assert server.stop() == 0
    assert server.stdout[-1] == "Stopped."
    assert not path.exists(), "the socket file was left behind"


# --- information ---------------------------------------------------------------------------


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tinyhttp {tinyhttp.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", tinyhttp.__version__)


def test_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tinyhttp")
    for flag in ("--port", "--bind", "--directory", "--unix", "--quiet", "--version"):
        assert flag in result.stdout


# --- the access log ------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_has_no_access_log(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session, flag: str
) -> None:
    server = launch(str(docroot), "--port", "0", flag)
    server.started()
    get_hello(http, server)
    assert http.get(server.url + "missing", timeout=TIMEOUT).status_code == 404
    assert server.stop() == 0
    assert server.stderr == []


def test_access_log_has_one_combined_line_per_request(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    server = launch(str(docroot), "--port", "0")
    server.started()
    ok = http.get(
        server.url + "hello.txt?x=1",
        headers={"Referer": "http://example.test/page", "User-Agent": "cli-test/1.0"},
        timeout=TIMEOUT,
    )
    assert ok.status_code == 200
    missing = http.get(
        server.url + "missing", headers={"User-Agent": "cli-test/2.0"}, timeout=TIMEOUT
    )
    assert missing.status_code == 404
    assert server.stop() == 0
    assert len(server.stderr) == 2, server.stderr
    first, second = (ACCESS_LINE.fullmatch(line) for line in server.stderr)
    assert first is not None, server.stderr[0]
    assert second is not None, server.stderr[1]
    assert first["request"] == "GET /hello.txt?x=1 HTTP/1.1"
    assert first["status"] == "200"
    assert first["size"] == str(len(HELLO))
    assert first["referer"] == "http://example.test/page"
    assert first["agent"] == "cli-test/1.0"
    assert second["request"] == "GET /missing HTTP/1.1"
    assert second["status"] == "404"
    assert second["size"] == missing.headers["Content-Length"]
    assert second["referer"] == "-"
    assert second["agent"] == "cli-test/2.0"


# --- resources -----------------------------------------------------------------------------


def test_open_files_soft_limit_is_raised_to_the_hard_limit(
    launch: Callable[..., Tinyhttp], docroot: Path, http: requests.Session
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/<pid>/limits")
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the hard limit is unlimited")
    low = min(256, hard)
    if low == hard:
        pytest.skip("the hard limit is too low to lower the soft one below it")
    # Start with a soft limit below the hard one, so there is something to raise.
    wrapper = (
        "import resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, {hard}))\n"
        f"sys.argv = ['tinyhttp', {str(docroot)!r}, '--port', '0']\n"
        "runpy.run_module('tinyhttp', run_name='__main__', alter_sys=True)\n"
    )
    server = launch(command=[sys.executable, "-c", wrapper])
    server.started()
    limits = Path(f"/proc/{server.popen.pid}/limits").read_text()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft_now, hard_now = row.split()[3:5]
    assert (soft_now, hard_now) == (str(hard), str(hard)), row
    get_hello(http, server)
    assert server.stop() == 0


# --- flags that contradict each other, and a missing dependency ----------------------------


@pytest.mark.parametrize("extra", [("--port", "8080"), ("--bind", "127.0.0.1"), ("-p", "0")])
def test_unix_with_an_address_is_refused(
    docroot: Path, tmp_path: Path, extra: tuple[str, str]
) -> None:
    # The port used to be ignored silently and the server ran on the socket file.
    message = assert_usage_error(run_cli(str(docroot), "--unix", str(tmp_path / "s"), *extra))
    assert "--unix" in message and extra[0].lstrip("-")[:1] in message


@pytest.mark.parametrize("args", [("A", "A"), ("A", "-d", "A"), ("A", "B", "C")])
def test_one_folder_at_a_time(docroot: Path, args: tuple[str, ...]) -> None:
    named = [str(docroot) if arg in "ABC" else arg for arg in args]
    message = assert_usage_error(run_cli(*named))
    assert "one folder" in message


def test_help_writes_seconds_as_s() -> None:
    text = run_cli("--help").stdout
    for flag in ("--head-timeout S", "--idle-timeout S", "--send-timeout S", "--drain-timeout S"):
        assert flag in text, text
    assert "--max-connections N" in text


def test_without_h11_one_line_says_how_to_install(tmp_path: Path) -> None:
    # -S: no site-packages, so no h11; the package itself is found from the repository root.
    root = Path(tinyhttp.__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-S", "-m", "tinyhttp", "--port", "0"],
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    message = assert_usage_error(result)
    assert "h11" in message
    assert "pip install -q -e ." in message  # README's set-up command


# --- what a stop cost ----------------------------------------------------------------------


def test_a_drain_that_cuts_an_answer_says_so(
    launch: Callable[..., Tinyhttp], docroot: Path
) -> None:
    with open(docroot / "big.bin", "wb") as big:
        big.truncate(256 * 1024 * 1024)
    server = launch(str(docroot), "--port", "0", "--drain-timeout", "0.5")
    server.started()
    with connect(server.port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")  # then it stops reading
        server.send(signal.SIGTERM)
        assert server.finish() == 0
    assert server.stdout[-1] == "Stopped; 1 answer cut after the 0.5 s drain"
    line = next(line for line in server.stderr if "/big.bin" in line)
    match = ACCESS_LINE.match(line)
    assert match is not None, line
    assert 0 < int(match["size"]) < 256 * 1024 * 1024
    assert line.endswith(" cut:drain")
