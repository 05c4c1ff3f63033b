"""Benchmark tinyhttp against other static-file servers with wrk, on loopback only.

    python scripts/bench.py [--quick] [--duration S] [--only NAME,...] [--chart PATH] [--json PATH]
                            [--workers N] [--log] [--compare PATH] [--tls]
    python scripts/bench.py --idle N

The first form writes 1k.bin, 64k.bin and 256m.bin into a temporary folder, starts tinyhttp and
every peer it can find (python -m http.server always; twisted web, aiohttp's static handler,
uvicorn+h11 with a bare ASGI app, nginx with one worker when installed), each on its own free
127.0.0.1 port, loads each with wrk, and prints one table: rows are metrics, columns are servers,
and every peer's cell carries the ratio tinyhttp / peer. Beside each throughput row is the
server's CPU time per request: utime + stime of its whole process tree (/proc/PID/stat) over the
wrk run, divided by the requests wrk completed; it is far steadier than req/s on a shared
machine. The same table goes to a chart PNG and, with --json, to a JSON file.

Two more columns are always there: "floor probe" (scripts/floor_probe.py), a measuring stick and
not a server, shows what one selectors loop and h11 cost per request with nothing else around
them. --log adds "tinyhttp+log" (its access log on, written to a file); --compare PATH adds
"tinyhttp@NAME", the tinyhttp of another checkout (a `git worktree` of an older commit), for a
before/after in one run; --tls adds https:// rows for tinyhttp and nginx with a throwaway
self-signed certificate made by the openssl command.

The second form holds N idle keep-alive connections to tinyhttp from another process and
reports the server's resident memory per connection.

Every server runs in its own session and is stopped at the end (SIGTERM, then SIGKILL after a
deadline), whatever happens, Ctrl-C included. The peers come with `pip install -e '.[bench]'`;
wrk, nginx and openssl come from the system's packages.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import importlib.util
import json
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "LOADS",
    "METRICS",
    "Metric",
    "Report",
    "WrkParseError",
    "WrkResult",
    "command_lines",
    "format_ratio",
    "main",
    "parse_response_status",
    "parse_wrk",
    "peer_ratio",
    "per_request",
    "ratio",
    "render_table",
    "stat_cpu_ticks",
    "summarize",
    "wanted_metrics",
]

HOST = "127.0.0.1"  # loopback only: nothing here may leave the machine
REPO = Path(__file__).resolve().parent.parent
KiB, MiB, GiB = 1024, 1024**2, 1024**3
START_DEADLINE = 20.0  # seconds a server gets to accept its first connection
STOP_DEADLINE = 10.0  # seconds between SIGTERM and SIGKILL
WRK_MISSING = (
    "wrk not found: install it with 'apt-get install wrk' (Debian/Ubuntu) or 'brew install wrk'"
)
BENCH_EXTRA = "pip install -e '.[bench]'"


# --- parsing wrk's report ------------------------------------------------------------------


class WrkParseError(ValueError):
    """wrk's output lacks a line the benchmark needs (it failed, or its format changed)."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured, in base units: requests/s, bytes/s, seconds."""

    requests_per_sec: float
    bytes_per_sec: float
    p99_seconds: float | None  # only with --latency
    errors: int  # socket errors plus non-2xx/3xx answers
    error_lines: str = ""  # wrk's own lines about them, for the notes
    requests: int = 0  # requests wrk completed in the run
    cpu_seconds: float | None = None  # the server tree's CPU time over the run (not from wrk)

    @property
    def cpu_per_request(self) -> float | None:
        return per_request(self.cpu_seconds, self.requests)


# wrk prints sizes in binary units ("13.33MB" is 13.33 MiB) and times as us, ms, s, m, h.
_SIZE_UNITS = {"B": 1, "KB": KiB, "MB": MiB, "GB": GiB, "TB": 1024**4, "PB": 1024**5}
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_REQUESTS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TRANSFER = re.compile(r"^Transfer/sec:\s+([\d.]+)([KMGTP]?B)\s*$", re.MULTILINE)
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_COMPLETED = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)


def parse_wrk(text: str) -> WrkResult:
    """Read requests/s, transfer/s, the 99th percentile latency and error counts from wrk."""
    requests = _REQUESTS.search(text)
    transfer = _TRANSFER.search(text)
    if requests is None or transfer is None:
        raise WrkParseError(f"no Requests/sec or Transfer/sec line in wrk's output:\n{text}")
    p99 = _P99.search(text)
    completed = _COMPLETED.search(text)
    return WrkResult(
        requests_per_sec=float(requests[1]),
        bytes_per_sec=float(transfer[1]) * _SIZE_UNITS[transfer[2]],
        p99_seconds=float(p99[1]) * _TIME_UNITS[p99[2]] if p99 else None,
        errors=_error_count(text),
        error_lines="; ".join(
            m[0] for m in (_SOCKET_ERRORS.search(text), _NON_2XX.search(text)) if m
        ),
        requests=int(completed[1]) if completed else 0,
    )


def _error_count(text: str) -> int:
    socket_errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    counts = [int(n) for n in socket_errors.groups()] if socket_errors else []
    return sum(counts) + (int(non_2xx[1]) if non_2xx else 0)


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One row of the table: its key, its label, how to show it, and which way is better."""

    key: str
    label: str
    scale: float  # the value in base units is divided by this for display
    spec: str  # format spec for the scaled value
    higher_is_better: bool
    compare: bool = True  # a ratio of ratios says nothing: such rows get none

    def show(self, value: float) -> str:
        return format(value / self.scale, self.spec)

    @property
    def better(self) -> str:
        return "higher" if self.higher_is_better else "lower"


def _cpu(key: str, label: str, spec: str = ",.1f") -> Metric:
    """A CPU-per-request row: kept in seconds per request, shown in microseconds."""
    return Metric(key, label, 1e-6, spec, False)


METRICS = (
    Metric("rps_1k", "1 KB keep-alive, req/s (c50)", 1, ",.0f", True),
    _cpu("cpu_1k", "1 KB keep-alive, CPU µs/req (c50)"),
    Metric("p99_1k", "1 KB p99 latency, ms (c50)", 1e-3, ",.2f", False),
    Metric("mib_64k", "64 KiB, MiB/s (c50)", MiB, ",.0f", True),
    _cpu("cpu_64k", "64 KiB, CPU µs/req (c50)"),
    Metric("gib_256m", "256 MiB, GiB/s (c1, best of 3)", GiB, ",.2f", True),
    _cpu("cpu_256m", "256 MiB, CPU µs/req (c1)", ",.0f"),
    Metric("rps_close", "new connection each, req/s (c50)", 1, ",.0f", True),
    _cpu("cpu_close", "new connection each, CPU µs/req (c50)"),
    Metric("rps_c1000", "1 KB keep-alive, req/s (c1000)", 1, ",.0f", True),
    _cpu("cpu_c1000", "1 KB keep-alive, CPU µs/req (c1000)"),
    Metric("c1000_vs_c50", "req/s c1000 / req/s c50", 1, ".2f", True, compare=False),
    Metric("rps_tls_1k", "TLS 1 KB keep-alive, req/s (c50)", 1, ",.0f", True),
    _cpu("cpu_tls_1k", "TLS 1 KB keep-alive, CPU µs/req (c50)"),
    Metric("gib_tls_256m", "TLS 256 MiB, GiB/s (c1, best of 3)", GiB, ",.2f", True),
    _cpu("cpu_tls_256m", "TLS 256 MiB, CPU µs/req (c1)", ",.0f"),
    Metric("peak_rss", "peak RSS, MiB", MiB, ",.1f", False),
)
SUBJECT = "tinyhttp"  # the server every ratio is about
FLOOR = "floor probe"  # scripts/floor_probe.py: a measuring stick, not a server


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """tinyhttp's figure over a peer's, or None when either is missing or the peer's is 0."""
    if ours is None or not theirs:
        return None
    return ours / theirs


def format_ratio(value: float | None) -> str:
    return "" if value is None else f"({value:.2f}x)"


Values = dict[str, dict[str, float]]  # server name -> metric key -> value in base units


def render_table(
    servers: Sequence[str],
    values: Values,
    flagged: frozenset[tuple[str, str]] = frozenset(),
    wanted: frozenset[str] = frozenset(),
) -> str:
    """The results as aligned text: one row per metric that any server measured, or wanted.

    `flagged` holds (server, metric) pairs measured while wrk counted errors; they get a `!`.
    A `wanted` row is shown even when nobody measured it, so a load that failed everywhere
    shows as dashes (the notes say why) rather than vanishing.
    """
    header = ["metric", "better", *servers]
    rows = [header]
    shown = [
        m for m in METRICS if m.key in wanted or any(m.key in values.get(s, {}) for s in servers)
    ]
    for metric in shown:
        cells = [_cell(metric, name, values, flagged) for name in servers]
        rows.append([metric.label, metric.better, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            _align(cell, width, i) for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    dashes = any(cell == "-" for row in rows[1:] for cell in row[2:])
    legend = _legend(flagged, {m.key for m in shown}, FLOOR in servers, dashes)
    return "\n".join(line.rstrip() for line in [*lines, "", *legend])


def _cell(metric: Metric, server: str, values: Values, flagged: frozenset[tuple[str, str]]) -> str:
    value = values.get(server, {}).get(metric.key)
    if value is None:
        return "-"
    mark = "!" if (server, metric.key) in flagged else ""
    return f"{metric.show(value)}{mark} {format_ratio(peer_ratio(metric, server, values))}".rstrip()


def peer_ratio(metric: Metric, server: str, values: Values) -> float | None:
    """tinyhttp / `server` on this metric; None for tinyhttp itself and rows without ratios."""
    if server == SUBJECT or not metric.compare:
        return None
    return ratio(values.get(SUBJECT, {}).get(metric.key), values.get(server, {}).get(metric.key))


def _align(cell: str, width: int, column: int) -> str:
    return cell.ljust(width) if column < 2 else cell.rjust(width)  # names left, numbers right


def _legend(
    flagged: frozenset[tuple[str, str]], shown: set[str], floor: bool, dashes: bool
) -> list[str]:
    lines = [
        "(Nx) = tinyhttp / that peer: where higher is better, above 1 means tinyhttp is ahead;",
        "       where lower is better (latency, CPU, memory), below 1 means tinyhttp is ahead.",
    ]
    if any(key.startswith("cpu_") for key in shown):
        lines += [
            "CPU  = utime + stime of the server's whole process tree (/proc/PID/stat) over the",
            "       wrk run, divided by the requests wrk completed. CPU time is far steadier than",
            "       req/s on a shared machine, where neighbours take turns on the cores: read",
            "       these rows first.",
        ]
    if floor:
        lines += [
            f"{FLOOR} = scripts/floor_probe.py, a measuring stick, not a server: one selectors",
            "       loop + h11 answering from memory with tinyhttp's nine headers, one stat and",
            "       two access calls per request, nothing else: what h11 itself costs.",
        ]
    if flagged:
        lines.append("!    = wrk counted socket errors or non-2xx answers in that run (see notes).")
    if dashes:
        lines.append("-    = not measured there (skipped, or did not start: see the notes).")
    return lines


# --- the files served ----------------------------------------------------------------------

SMALL_FILES = {"1k.bin": 1024, "64k.bin": 64 * KiB}
LARGE_FILES = {"256m.bin": 256 * MiB}


# tinyhttp's cache skips files changed (mtime or ctime) in the last 2 s; utime() can date
# the mtime back but not the ctime, so the loads wait until the files are this old.
CACHE_SETTLE = 2.5


def write_files(root: Path, sizes: dict[str, int]) -> None:
    """Write real (not sparse) random bytes, their mtime an hour back."""
    an_hour_ago = time.time() - 3600
    for name, size in sizes.items():
        path = root / name
        with path.open("wb") as file:
            for start in range(0, size, MiB):
                file.write(os.urandom(min(MiB, size - start)))
        path.chmod(0o644)  # nginx's worker runs as another user when we are root
        os.utime(path, (an_hour_ago, an_hour_ago))


# --- the servers ---------------------------------------------------------------------------

Command = Callable[[Path, Path, int], list[str]]  # (root, work dir, port) -> argv


@dataclass(frozen=True)
class Certificate:
    """A throwaway self-signed certificate and its key, for the TLS rows."""

    cert: Path
    key: Path


def tinyhttp_command(
    root: Path,
    work: Path,
    port: int,
    workers: int = 1,
    quiet: bool = True,
    tls: Certificate | None = None,
) -> list[str]:
    command = [sys.executable, "-m", "tinyhttp", str(root), "--port", str(port)]
    command += ["--quiet"] if quiet else []  # without it the access log goes to the server's log
    command += ["--workers", str(workers)] if workers > 1 else []
    return command + (["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else [])


FLOOR_PROBE = REPO / "scripts" / "floor_probe.py"


def floor_probe_command(root: Path, work: Path, port: int) -> list[str]:
    return [sys.executable, str(FLOOR_PROBE), str(root), "--port", str(port)]


def http_server_command(root: Path, work: Path, port: int) -> list[str]:
    # Its default protocol is HTTP/1.0: a new connection for every request. It logs every
    # request to stderr and has no switch to stop it.
    return [sys.executable, "-m", "http.server", str(port), "-b", HOST, "-d", str(root)]


def twisted_command(root: Path, work: Path, port: int) -> list[str]:
    # --log-level=warn drops the per-request access log, as every other server here runs.
    listen = f"tcp:{port}:interface={HOST}"
    twist = [sys.executable, "-m", "twisted", "--log-level=warn"]
    return [*twist, "web", "--path", str(root), "--listen", listen]


AIOHTTP_APP = """\
from aiohttp import web

app = web.Application()
app.add_routes([web.static("/", {root!r})])
web.run_app(app, host={host!r}, port={port}, access_log=None, print=None)
"""


def aiohttp_command(root: Path, work: Path, port: int) -> list[str]:
    script = work / "aiohttp_app.py"
    script.write_text(AIOHTTP_APP.format(root=str(root), host=HOST, port=port))
    return [sys.executable, str(script)]


ASGI_APP = """\
import os

# Every file, read once at start-up: the app is as bare as an ASGI server allows.
ROOT = {root!r}
FILES = {{}}
for name in os.listdir(ROOT):
    with open(os.path.join(ROOT, name), "rb") as file:
        FILES["/" + name] = file.read()


async def app(scope, receive, send):
    body = FILES.get(scope["path"])
    status = 404 if body is None else 200
    body = b"" if body is None else body
    headers = [(b"content-type", b"application/octet-stream"),
               (b"content-length", str(len(body)).encode())]
    await send({{"type": "http.response.start", "status": status, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
"""


# One process, h11 (not httptools), plain asyncio (not uvloop), no access log: pure Python.
UVICORN_FLAGS = "--http h11 --loop asyncio --workers 1 --lifespan off --no-access-log"


def uvicorn_command(root: Path, work: Path, port: int) -> list[str]:
    (work / "bench_asgi.py").write_text(ASGI_APP.format(root=str(root)))
    app = ["bench_asgi:app", "--app-dir", str(work), "--log-level", "warning"]
    where = ["--host", HOST, "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", *app, *where, *UVICORN_FLAGS.split()]


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen {host}:{port}{ssl};
        root {root};
{certificate}    }}
}}
"""
NGINX_TLS = "        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"


def nginx_command(root: Path, work: Path, port: int, tls: Certificate | None = None) -> list[str]:
    home = work / ("nginx-tls" if tls else "nginx")  # its conf, pid, logs and temp folders
    home.mkdir(exist_ok=True)
    conf = home / "nginx.conf"
    certificate = NGINX_TLS.format(cert=tls.cert, key=tls.key) if tls else ""
    ssl_flag = " ssl" if tls else ""
    text = NGINX_CONF.format(
        work=home, host=HOST, port=port, root=root, ssl=ssl_flag, certificate=certificate
    )
    conf.write_text(text)
    # -e: the error log before the conf is read, or nginx tries /var/log/nginx first.
    paths = ["-p", str(home), "-c", str(conf), "-e", str(home / "nginx-error.log")]
    return [nginx_path() or "nginx", *paths]


def nginx_path() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class Peer:
    name: str  # its column in the table
    command: Command
    missing: Callable[[], str | None]  # why it can't run here, or None
    loads: frozenset[str] | None = None  # the load keys it runs; None: all of its kind
    tls: Certificate | None = None  # set: it serves https://, and only the TLS loads
    cwd: Path = REPO
    env: tuple[tuple[str, str], ...] = ()  # added to our environment

    @property
    def label(self) -> str:
        return f"{self.name} (TLS)" if self.tls else self.name


def _module(name: str) -> Callable[[], str | None]:
    return lambda: None if importlib.util.find_spec(name) else f"{name} is not installed"


# The floor probe holds small files in memory only: no 256 MiB row.
FLOOR_LOADS = frozenset({"small", "medium", "close", "crowd"})

SERVERS = (
    Peer(SUBJECT, tinyhttp_command, _module("tinyhttp")),
    Peer(FLOOR, floor_probe_command, _module("h11"), loads=FLOOR_LOADS),
    Peer("http.server", http_server_command, lambda: None),
    Peer("twisted", twisted_command, _module("twisted")),
    Peer("aiohttp", aiohttp_command, _module("aiohttp")),
    Peer("uvicorn+h11", uvicorn_command, _module("uvicorn")),
    Peer("nginx", nginx_command, lambda: None if nginx_path() else "nginx is not on PATH"),
)


@dataclass
class Running:
    """A started server: its process (leader of its own session), its port and its log."""

    peer: Peer
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def name(self) -> str:
        return self.peer.name

    @property
    def label(self) -> str:
        return self.peer.label

    def url(self, path: str) -> str:
        return f"{'https' if self.peer.tls else 'http'}://{HOST}:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start(
    peer: Peer, root: Path, work: Path, extra: Sequence[str] = (), wrap: Sequence[str] = ()
) -> Running:
    """Start a server in its own session, so Ctrl-C reaches us and we stop it in order;
    `wrap` goes before its command (a tool that runs it, such as valgrind)."""
    port = free_port()
    log = work / f"{peer.label}.log"
    argv = [*wrap, *peer.command(root, work, port), *extra]
    env = {**os.environ, **dict(peer.env)} if peer.env else None
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=peer.cwd,
            env=env,
            start_new_session=True,
        )
    return Running(peer, port, process, log)


def wait_ready(server: Running, deadline: float) -> str | None:
    """Poll until the server accepts and answers GET /1k.bin with 200; else say why not."""
    allowed = deadline - time.monotonic()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with status {server.process.returncode}: {log_tail(server.log)}"
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return check_answer(server)
        except OSError:
            time.sleep(0.05)
    return f"did not accept connections within {allowed:.0f} s: {log_tail(server.log)}"


def check_answer(server: Running) -> str | None:
    """None if GET /1k.bin gets 200 and 1,024 bytes (nginx says 403 if it cannot read); else why."""
    tls = server.peer.tls
    connection = (
        http.client.HTTPSConnection(
            HOST, server.port, timeout=5, context=ssl.create_default_context(cafile=tls.cert)
        )
        if tls
        else http.client.HTTPConnection(HOST, server.port, timeout=5)
    )
    try:
        connection.request("GET", "/1k.bin")
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        return f"GET /1k.bin failed: {error!r}"
    finally:
        connection.close()
    if response.status != 200 or len(body) != 1024:
        return f"GET /1k.bin gave {response.status} and {len(body)} bytes"
    return None


def log_tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(text) or "(no output)"
    return "(no log)"


def stop(server: Running, grace: float = STOP_DEADLINE) -> None:
    """SIGTERM, then SIGKILL to its whole process group if it is still there `grace` later."""
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        # Not yet reaped, so its group id is still ours: workers die with their parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_DEADLINE)


# --- memory --------------------------------------------------------------------------------


def status_field(pid: int, name: str) -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM) in bytes; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants, found through the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The name in parentheses may hold spaces: the parent id follows its last ")".
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return tree


def peak_rss(pid: int) -> int:
    """VmHWM summed over the process tree: nginx's master and worker both count."""
    return sum(status_field(member, "VmHWM") for member in process_tree(pid))


# --- CPU time ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # per second


def stat_cpu_ticks(line: str) -> int:
    """utime + stime in clock ticks, from a /proc/PID/stat line (fields 14 and 15, proc(5)).

    Every thread of the process counts. The name in parentheses may hold spaces and ")":
    the fields after its last ")" start at field 3, the state.
    """
    fields = line.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the process and all its descendants; None without /proc."""
    total = 0
    for member in process_tree(pid):
        try:
            total += stat_cpu_ticks(Path(f"/proc/{member}/stat").read_text())
        except (OSError, ValueError, IndexError):
            if member == pid:
                return None  # no /proc here, or the server is gone
    return total / CLOCK_TICKS


def cpu_used(before: float | None, after: float | None) -> float | None:
    """CPU seconds between two readings; None when either is missing or a member vanished."""
    if before is None or after is None or after < before:
        return None
    return after - before


def per_request(total: float | None, requests: int) -> float | None:
    """`total` shared over `requests`; None when nothing was measured or completed."""
    if total is None or requests <= 0:
        return None
    return total / requests


# --- loads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    key: str
    path: str
    connections: int
    extra: tuple[str, ...] = ()
    runs: int = 1  # more than one: the best is kept, servers alternated between runs
    tls: bool = False  # https://, run only on the servers started with a certificate
    large: bool = False  # the 256 MiB file, left out by --quick


LOADS = (
    Load("small", "/1k.bin", 50, ("--latency",)),
    Load("medium", "/64k.bin", 50),
    Load("large", "/256m.bin", 1, runs=3, large=True),
    Load("close", "/1k.bin", 50, ("-H", "Connection: close")),
    Load("crowd", "/1k.bin", 1000),
    Load("tls_small", "/1k.bin", 50, tls=True),
    Load("tls_large", "/256m.bin", 1, runs=3, tls=True, large=True),
)


def pick_loads(quick: bool, tls: bool) -> list[Load]:
    return [load for load in LOADS if not (quick and load.large) and (tls or not load.tls)]


def applies(load: Load, peer: Peer) -> bool:
    """Whether this peer runs this load: TLS loads on TLS servers, and its own list if any."""
    kind = load.tls == (peer.tls is not None)
    return kind and (peer.loads is None or load.key in peer.loads)


def wrk_argv(load: Load, duration: int, url: str) -> list[str]:
    return ["wrk", "-t1", f"-c{load.connections}", f"-d{duration}s", *load.extra, url]


def run_wrk(argv: list[str], duration: int) -> WrkResult:
    """One wrk run, bounded in time; raises WrkParseError when it reports nothing usable."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise WrkParseError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


@dataclass
class Report:
    """Everything measured: values, cells measured with errors, and notes on what went wrong."""

    servers: list[str]
    values: Values = field(default_factory=dict)
    flagged: set[tuple[str, str]] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)


def load_all(
    servers: list[Running], loads: Sequence[Load], duration: int, report: Report, rounds: int = 1
) -> None:
    """Each load on each server in turn; a load run several times alternates the servers."""
    for load in loads:
        for _ in range(max(load.runs, rounds)):
            for server in servers:
                if applies(load, server.peer):
                    load_once(server, load, duration, report)


def load_once(server: Running, load: Load, duration: int, report: Report) -> None:
    """One wrk run, with the server tree's CPU time read just before and just after it."""
    argv = wrk_argv(load, duration, server.url(load.path))
    print(f"  {server.label:<16} {shlex.join(argv)}", flush=True)
    before = tree_cpu_seconds(server.process.pid)
    try:
        result = run_wrk(argv, duration)
    except (WrkParseError, subprocess.TimeoutExpired) as error:
        report.notes.append(f"{server.label}, {load.key}: {error}")
        return
    used = cpu_used(before, tree_cpu_seconds(server.process.pid))
    result = replace(result, cpu_seconds=used)
    report.runs.setdefault(server.name, {}).setdefault(load.key, []).append(result)
    if result.errors:
        report.notes.append(f"{server.label}, {load.key}: {result.error_lines}")


def best(results: list[WrkResult]) -> WrkResult | None:
    return max(results, key=lambda r: r.bytes_per_sec, default=None)


def typical(
    results: list[WrkResult], take: Callable[[WrkResult], float | None], load_key: str
) -> float | None:
    """One figure from a load's runs: the large file's from its best run (its row says best
    of 3, and its CPU is that run's), any other load's the median, which a neighbour's burst
    on a shared machine moves least."""
    if load_key in ("large", "tls_large"):
        chosen = best(results)
        return take(chosen) if chosen else None
    values = [value for value in map(take, results) if value is not None]
    return statistics.median(values) if values else None


def _bytes(result: WrkResult) -> float | None:
    return result.bytes_per_sec


# Which load each metric comes from, and how: (metric key, load key, what to take).
_METRIC_SOURCES: tuple[tuple[str, str, Callable[[WrkResult], float | None]], ...] = (
    ("rps_1k", "small", lambda r: r.requests_per_sec),
    ("cpu_1k", "small", lambda r: r.cpu_per_request),
    ("p99_1k", "small", lambda r: r.p99_seconds),
    ("mib_64k", "medium", _bytes),
    ("cpu_64k", "medium", lambda r: r.cpu_per_request),
    ("gib_256m", "large", _bytes),
    ("cpu_256m", "large", lambda r: r.cpu_per_request),
    ("rps_close", "close", lambda r: r.requests_per_sec),
    ("cpu_close", "close", lambda r: r.cpu_per_request),
    ("rps_c1000", "crowd", lambda r: r.requests_per_sec),
    ("cpu_c1000", "crowd", lambda r: r.cpu_per_request),
    ("rps_tls_1k", "tls_small", lambda r: r.requests_per_sec),
    ("cpu_tls_1k", "tls_small", lambda r: r.cpu_per_request),
    ("gib_tls_256m", "tls_large", _bytes),
    ("cpu_tls_256m", "tls_large", lambda r: r.cpu_per_request),
)


def wanted_metrics(loads: Sequence[Load]) -> frozenset[str]:
    """The rows the loads run are meant to fill: shown even if every server missed them."""
    keys = {load.key for load in loads}
    return frozenset(metric for metric, load, _ in _METRIC_SOURCES if load in keys)


def summarize(report: Report) -> None:
    """Turn wrk runs into the table's values (base units), flagging runs that saw errors."""
    for name, runs in report.runs.items():
        values = report.values.setdefault(name, {})
        for metric_key, load_key, take in _METRIC_SOURCES:
            results = runs.get(load_key, [])
            value = typical(results, take, load_key)
            if value is None:
                continue
            values[metric_key] = value
            if any(result.errors for result in results):
                report.flagged.add((name, metric_key))
        if "rps_c1000" in values and values.get("rps_1k"):
            values["c1000_vs_c50"] = values["rps_c1000"] / values["rps_1k"]


# --- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "nproc": str(cpu_count()),
        "python": platform.python_version(),
        "wrk": wrk_version(),
    }


def cpu_count() -> int | None:
    """The CPUs this process may run on (what nproc prints), or all of them elsewhere."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def wrk_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        first_line = (done.stdout + done.stderr).splitlines()[0]  # "wrk 4.2.0 [epoll] Copyright…"
        return first_line.removeprefix("wrk ").split(" Copyright")[0]
    return "unknown"


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one; the children (wrk -c1000, servers) inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- output --------------------------------------------------------------------------------


def command_lines(loads: Sequence[Load], duration: int) -> list[str]:
    return [
        shlex.join(wrk_argv(load, duration, f"{_scheme(load)}://{HOST}:PORT{load.path}"))
        + (f"   (x{load.runs}, best kept)" if load.runs > 1 else "")
        for load in loads
    ]


def _scheme(load: Load) -> str:
    return "https" if load.tls else "http"


def print_report(
    report: Report, loads: Sequence[Load], duration: int, info: dict[str, str]
) -> None:
    print()
    flagged = frozenset(report.flagged)
    print(render_table(report.servers, report.values, flagged, wanted_metrics(loads)))
    print()
    print("machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    print("wrk commands (PORT is each server's own):")
    for line in command_lines(loads, duration):
        print("  " + line)
    print("peak RSS is VmHWM summed over each server's process tree (nginx: master + worker);")
    print("uvicorn's ASGI app holds every file in memory, 256 MiB included when it is served.")
    for note in report.notes:
        print("note: " + note)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


def write_chart(path: Path, report: Report, info: dict[str, str]) -> None:
    """One bar chart per metric; matplotlib is imported only here, and is optional."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print(f"matplotlib is not installed, so no chart: {BENCH_EXTRA}")
        return
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    shown = [m for m in METRICS if any(m.key in report.values.get(s, {}) for s in report.servers)]
    columns = 4
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        _bar_chart(ax, metric, report)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    figure.suptitle(
        f"tinyhttp and its peers: {info['cpu']}, {info['nproc']} CPUs, {info['platform']}"
    )
    if FLOOR in report.servers:
        note = f"grey: {FLOOR}, a measuring stick (h11 and a selectors loop alone), not a server"
        figure.text(0.5, 0.005, note, ha="center", fontsize=8, color="dimgray")
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def _bar_chart(ax: Any, metric: Metric, report: Report) -> None:
    names = [s for s in report.servers if metric.key in report.values.get(s, {})]
    heights = [report.values[s][metric.key] / metric.scale for s in names]
    colors = [_COLORS.get(s, "tab:blue") for s in names]
    bars = ax.bar(names, heights, color=colors)
    ax.bar_label(
        bars, labels=[_bar_text(metric, name, report.values) for name in names], fontsize=7
    )
    ax.set_title(f"{metric.label}\n({metric.better} is better)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.margins(y=0.2)


_COLORS = {SUBJECT: "tab:orange", FLOOR: "tab:gray"}


def _bar_text(metric: Metric, server: str, values: Values) -> str:
    """The value over each bar and, over a peer's, the ratio tinyhttp / peer below it."""
    value = metric.show(values[server][metric.key])
    return f"{value}\n{format_ratio(peer_ratio(metric, server, values))}".rstrip()


# --- the main run --------------------------------------------------------------------------


def pick_peers(
    only: list[str] | None,
    workers: int = 1,
    *,
    log: bool = False,
    compare: Path | None = None,
    cert: Certificate | None = None,
) -> tuple[list[Peer], list[str]]:
    """The servers to run (tinyhttp first, with `workers` processes) and why others are skipped.

    --log and --compare add their tinyhttp variants whatever --only says; with a certificate,
    tinyhttp and nginx get a TLS twin each, in the same column.
    """
    tinyhttp = functools.partial(tinyhttp_command, workers=workers)
    found = SERVERS[0].missing
    plain = [] if only is not None and SUBJECT not in only else [Peer(SUBJECT, tinyhttp, found)]
    if compare is not None:
        plain.append(compare_peer(compare, workers))
    if log:
        plain.append(Peer(f"{SUBJECT}+log", functools.partial(tinyhttp, quiet=False), found))
    plain += [peer for peer in SERVERS[1:] if only is None or peer.name in only]
    chosen, skipped = [], []
    for peer in [*plain, *(tls_twins(plain, cert, workers) if cert else [])]:
        reason = peer.missing()
        if reason is None:
            chosen.append(peer)
        else:
            skipped.append(f"{peer.label}: {reason}")
    return chosen, skipped


def tls_twins(peers: list[Peer], cert: Certificate, workers: int) -> list[Peer]:
    """tinyhttp and nginx again, serving https:// with `cert`, for the TLS loads."""
    commands: dict[str, Command] = {
        SUBJECT: functools.partial(tinyhttp_command, workers=workers, tls=cert),
        "nginx": functools.partial(nginx_command, tls=cert),
    }
    return [
        replace(peer, command=commands[peer.name], tls=cert)
        for peer in peers
        if peer.name in commands
    ]


def compare_peer(tree: Path, workers: int) -> Peer:
    """The tinyhttp of another checkout, run from there with PYTHONPATH set to it."""
    tree = tree.resolve()
    # cwd too: `python -m` puts the current folder first on sys.path, before PYTHONPATH.
    return Peer(
        f"{SUBJECT}@{tree.name}",
        functools.partial(tinyhttp_command, workers=workers),
        functools.partial(imported_elsewhere, tree),
        cwd=tree,
        env=(("PYTHONPATH", str(tree)),),
    )


def imported_elsewhere(tree: Path) -> str | None:
    """None if `import tinyhttp`, run as the --compare peer is, finds the one in `tree`."""
    code = "import tinyhttp; print(tinyhttp.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot run Python in {tree}: {error}"
    found = Path(done.stdout.strip() or "?").resolve()
    if done.returncode != 0 or not found.is_relative_to(tree):
        return f"import tinyhttp in {tree} found {done.stdout.strip() or done.stderr.strip()}"
    return None


def commit_of(tree: Path) -> str:
    """`abc1234 subject` of the checkout's HEAD, or "" when it is no git checkout."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        return done.stdout.strip() if done.returncode == 0 else ""
    return ""


def start_all(peers: list[Peer], root: Path, work: Path, running: list[Running]) -> list[str]:
    """Start every server, then wait for each; those that fail are stopped and reported."""
    for peer in peers:
        running.append(start(peer, root, work))
    failed = []
    for server in list(running):
        reason = wait_ready(server, time.monotonic() + START_DEADLINE)
        if reason is not None:
            failed.append(f"{server.label} did not start: {reason}")
            stop(server)
            running.remove(server)
    return failed


def columns(running: Sequence[Running]) -> list[str]:
    """One column per server name, in start order (a TLS twin shares its server's)."""
    return list(dict.fromkeys(server.name for server in running))


@contextlib.contextmanager
def servers_stopped_at_exit() -> Iterator[list[Running]]:
    """A list of running servers, every one stopped on the way out, Ctrl-C or not."""
    running: list[Running] = []
    try:
        yield running
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C can't skip it
        for server in running:
            stop(server)
        signal.signal(signal.SIGINT, previous)


def estimate(loads: Sequence[Load], peers: Sequence[Peer], duration: int, rounds: int = 1) -> str:
    runs = sum(max(load.runs, rounds) for load in loads for peer in peers if applies(load, peer))
    seconds = runs * (duration + 0.3) + 2 * len(peers)  # wrk runs, plus start and stop
    return f"{runs} wrk runs of {duration} s: about {seconds / 60:.1f} minutes"


OPENSSL_REQ = (
    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost"
    " -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
)


def make_certificate(work: Path) -> Certificate | str:
    """A throwaway self-signed P-256 certificate for localhost and 127.0.0.1; or why not."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "openssl is not on PATH"
    made = Certificate(work / "cert.pem", work / "key.pem")
    argv = [openssl, *OPENSSL_REQ.split(), "-keyout", str(made.key), "-out", str(made.cert)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"openssl failed: {error}"
    if done.returncode != 0:
        return f"openssl exited with {done.returncode}: {done.stderr.strip()[-300:]}"
    return made


def peer_notes(peers: Sequence[Peer], loads: Sequence[Load], args: argparse.Namespace) -> list[str]:
    """What the table cannot say about the columns: who skips what, and what ran from where."""
    names = {peer.name for peer in peers}
    notes = []
    if args.workers > 1:
        notes.append(f"tinyhttp ran with --workers {args.workers}; every peer with one")
    if FLOOR in names and any(load.key == "large" for load in loads):
        notes.append(f"{FLOOR} skips the 256 MiB row: it holds small files in memory only")
    if args.log:
        notes.append("tinyhttp+log is tinyhttp without --quiet, its access log going to a file")
    if args.compare:
        tree = Path(args.compare).resolve()
        commit = commit_of(tree)
        notes.append(
            f"{SUBJECT}@{tree.name} is the tinyhttp in {tree}" + (f" ({commit})" if commit else "")
        )
    if args.tls:
        notes.append(
            "TLS rows: tinyhttp and nginx only, with a throwaway self-signed P-256 certificate"
        )
    return notes


def benchmark(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    loads = pick_loads(args.quick, args.tls)
    duration = args.duration or (3 if args.quick else 10)
    report = Report([])
    with tempfile.TemporaryDirectory(prefix="tinyhttp-bench-") as temp:
        work, root = Path(temp), Path(temp) / "files"
        root.mkdir()
        work.chmod(0o755)  # nginx's worker (user nobody, when we are root) must reach the files
        peers = choose_peers(args, work, report)
        report.notes[:0] = peer_notes(peers, loads, args)
        print(f"{len(peers)} servers, {estimate(loads, peers, duration, args.rounds)}", flush=True)
        write_files(root, SMALL_FILES | ({} if args.quick else LARGE_FILES))
        settled = time.monotonic() + CACHE_SETTLE
        with servers_stopped_at_exit() as running:
            report.notes.extend(start_all(peers, root, work, running))
            report.servers = columns(running)
            time.sleep(max(0.0, settled - time.monotonic()))  # usually 0: starting takes longer
            load_all(running, loads, duration, report, args.rounds)
            for server in running:
                if server.peer.tls is None:  # a TLS twin's memory is not its column's
                    values = report.values.setdefault(server.name, {})
                    values["peak_rss"] = peak_rss(server.process.pid)
    summarize(report)
    info = machine()
    print_report(report, loads, duration, info)
    write_chart(Path(args.chart), report, info)
    if args.json:
        write_json(Path(args.json), json_payload(report, loads, duration, info))
    return 0


def choose_peers(args: argparse.Namespace, work: Path, report: Report) -> list[Peer]:
    """The peers to start; the certificate for --tls is made in `work`."""
    cert = None
    if args.tls:
        made = make_certificate(work)
        if isinstance(made, str):
            report.notes.append(f"no TLS rows: {made}")
        else:
            cert = made
    only = args.only.split(",") if args.only else None
    compare = Path(args.compare) if args.compare else None
    peers, skipped = pick_peers(only, args.workers, log=args.log, compare=compare, cert=cert)
    report.notes.extend(f"skipped {reason}" for reason in skipped)
    return peers


def json_payload(
    report: Report, loads: Sequence[Load], duration: int, info: dict[str, str]
) -> dict[str, Any]:
    """Values in base units (bytes, seconds, requests/s; cpu_* in CPU seconds per request)."""
    return {
        "machine": info,
        "commands": command_lines(loads, duration),
        "metrics": {
            m.key: {"label": m.label, "better": m.better, "display_scale": m.scale} for m in METRICS
        },
        "values": report.values,
        "runs": {
            name: {key: [_run_json(r) for r in results] for key, results in runs.items()}
            for name, runs in report.runs.items()
        },
        "notes": report.notes,
    }


def _run_json(result: WrkResult) -> dict[str, Any]:
    fields = ("requests", "requests_per_sec", "bytes_per_sec", "cpu_seconds", "errors")
    return {name: getattr(result, name) for name in fields}


# --- idle connections ----------------------------------------------------------------------

IDLE_REQUEST = f"GET /1k.bin HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
IDLE_BATCH = 500  # connections opened and asked at once: well inside the listen backlog
IDLE_DEADLINE = 120.0  # seconds for each phase of the idle client


def parse_response_status(buffer: bytes) -> int | None:
    """The status of a whole HTTP response with Content-Length in `buffer`; None if incomplete."""
    head, separator, body = buffer.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *fields = head.decode("latin-1").split("\r\n")
    length = 0
    for line in fields:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]) if len(body) >= length else None


class Exchange:
    """One request on one socket, and the bytes of its answer so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self.status: int | None = None  # -1: the connection closed or failed first

    def on_readable(self) -> bool:
        """Read what arrived; True once the answer is whole or the connection is gone."""
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        self.received += chunk
        self.status = parse_response_status(self.received) if chunk else -1
        return self.status is not None


def ask(sockets: list[socket.socket], deadline: float) -> list[socket.socket]:
    """Send one request on each socket and read its answer; keep those answered 200."""
    done: list[Exchange] = []
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(IDLE_REQUEST)  # a few bytes into an empty send buffer: all go at once
                selector.register(sock, selectors.EVENT_READ, Exchange(sock))
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                if key.data.on_readable():
                    selector.unregister(key.fileobj)
                    done.append(key.data)
    answered = [exchange.sock for exchange in done if exchange.status == 200]
    for sock in set(sockets) - set(answered):
        sock.close()  # refused, failed or too slow: not a held connection
    return answered


def connect_batch(port: int, count: int, deadline: float) -> list[socket.socket]:
    """Up to `count` new non-blocking connections; fewer if one fails or time runs out."""
    sockets: list[socket.socket] = []
    while len(sockets) < count and time.monotonic() < deadline:
        try:
            sock = socket.create_connection((HOST, port), timeout=10)
        except OSError:
            break
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def idle_client(port: int, count: int) -> int:
    """The child process of --idle: hold `count` kept-alive connections, then ask on each again.

    It prints `held K`, waits for `again` on stdin, prints `answered A`, and holds the
    connections until its stdin closes.
    """
    raise_open_files_limit()
    held: list[socket.socket] = []
    deadline = time.monotonic() + IDLE_DEADLINE
    while len(held) < count and time.monotonic() < deadline:
        batch = connect_batch(port, min(IDLE_BATCH, count - len(held)), deadline)
        held += ask(batch, deadline)
        if len(batch) < min(IDLE_BATCH, count - len(held)):
            break  # the server stopped taking connections: report what is held
    print(f"held {len(held)}", flush=True)
    if sys.stdin.readline().strip() == "again":
        deadline = time.monotonic() + IDLE_DEADLINE
        batches = [held[i : i + IDLE_BATCH] for i in range(0, len(held), IDLE_BATCH)]
        print(f"answered {sum(len(ask(batch, deadline)) for batch in batches)}", flush=True)
        sys.stdin.read()
    for sock in held:
        sock.close()
    return 0


def read_reply(client: subprocess.Popen[str], word: str) -> int:
    """The number in the idle client's next line, which must start with `word`."""
    assert client.stdout is not None
    line = client.stdout.readline().split()
    if len(line) != 2 or line[0] != word:
        raise RuntimeError(f"the idle client said {line!r}, not '{word} N'")
    return int(line[1])


def idle_benchmark(count: int, json_path: str | None) -> int:
    """Hold `count` idle keep-alive connections to tinyhttp; report RSS per connection."""
    limits = ["--max-connections", str(count + 100), "--idle-timeout", "600"]
    limits += ["--head-timeout", "600"]
    with tempfile.TemporaryDirectory(prefix="tinyhttp-idle-") as temp:
        work, root = Path(temp), Path(temp) / "files"
        root.mkdir()
        write_files(root, SMALL_FILES)
        with servers_stopped_at_exit() as running:
            running.append(server := start(SERVERS[0], root, work, limits))
            reason = wait_ready(server, time.monotonic() + START_DEADLINE)
            if reason is not None:
                print(f"tinyhttp did not start: {reason}", file=sys.stderr)
                return 1
            result = hold_idle(server, count)
    print_idle(count, result)
    if json_path:
        write_json(Path(json_path), {"machine": machine(), "idle": result})
    return 0


def hold_idle(server: Running, count: int) -> dict[str, int]:
    """Server RSS before and while the idle client holds its connections, and the re-asked count."""
    before = status_field(server.process.pid, "VmRSS")  # after wait_ready's warm-up request
    argv = [sys.executable, __file__, "--idle-client", str(server.port), str(count)]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    try:
        held = read_reply(client, "held")
        after = status_field(server.process.pid, "VmRSS")
        client.stdin.write("again\n")
        client.stdin.flush()
        answered = read_reply(client, "answered")
    finally:
        client.stdin.close()  # the client lets its connections go and exits
        try:
            client.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait(STOP_DEADLINE)
        client.stdout.close()
    return {"held": held, "rss_before": before, "rss_after": after, "answered": answered}


def print_idle(count: int, result: dict[str, int]) -> None:
    held = result["held"]
    growth = result["rss_after"] - result["rss_before"]
    rows = [
        ("connections asked for", f"{count:,}"),
        ("held, each answered once", f"{held:,}"),
        ("server RSS before", f"{result['rss_before'] / MiB:,.1f} MiB"),
        ("server RSS while holding", f"{result['rss_after'] / MiB:,.1f} MiB"),
        ("RSS growth per connection", f"{growth / held:,.0f} B" if held else "-"),
        ("answered again after holding", f"{result['answered']:,} / {held:,}"),
    ]
    print("\nidle keep-alive connections to tinyhttp (clients in another process)")
    for label, value in rows:
        print(f"  {label:<30} {value:>16}")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="3 s per load, no 256 MiB test")
    p.add_argument("--duration", type=int, metavar="S", help="seconds per wrk run (default 10)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run every load N times, the servers taking turns, and report the medians",
    )
    p.add_argument(
        "--only", metavar="NAME,...", help="servers to run: " + ",".join(s.name for s in SERVERS)
    )
    p.add_argument(
        "--chart", default="bench.png", metavar="PATH", help="chart PNG (default bench.png)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="run tinyhttp with --workers N"
    )
    p.add_argument(
        "--idle", type=int, metavar="N", help="hold N idle connections to tinyhttp instead"
    )
    p.add_argument(
        "--log", action="store_true", help="add tinyhttp+log: tinyhttp with its access log on"
    )
    p.add_argument(
        "--compare",
        metavar="PATH",
        help="add the tinyhttp of another checkout (e.g. a git worktree), as tinyhttp@NAME",
    )
    p.add_argument("--tls", action="store_true", help="add https:// rows for tinyhttp and nginx")
    p.add_argument("--idle-client", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compare and not (Path(args.compare) / "tinyhttp" / "__main__.py").is_file():
        p.error(f"--compare: no tinyhttp/__main__.py in {args.compare}")
    unknown = set(args.only.split(",")) - {s.name for s in SERVERS} if args.only else set()
    if unknown:
        p.error(f"--only: no server called {', '.join(sorted(unknown))}")
    if (args.duration is not None and args.duration < 1) or (
        args.idle is not None and args.idle < 1
    ):
        p.error("--duration and --idle take a positive whole number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.idle_client:
            port, count = args.idle_client
            return idle_client(port, count)
        raise_open_files_limit()
        if args.idle:
            return idle_benchmark(args.idle, args.json)
        return benchmark(args)
    except KeyboardInterrupt:
        # The servers were stopped on the way out (servers_stopped_at_exit).
        print("interrupted; every server started was stopped", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it


if __name__ == "__main__":
    sys.exit(main())
