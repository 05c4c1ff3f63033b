"""Benchmark tinyhttp against other static-file servers with wrk, on loopback only.

    python scripts/bench.py [--quick] [--duration S] [--only NAME,...] [--chart PATH] [--json PATH]
    python scripts/bench.py --idle N

The first form writes 1k.bin, 64k.bin and 256m.bin into a temporary folder, starts tinyhttp and
every peer it can find (python -m http.server always; twisted web, aiohttp's static handler,
uvicorn+h11 with a bare ASGI app, nginx with one worker when installed), each on its own free
127.0.0.1 port, loads each with wrk, and prints one table: rows are metrics, columns are servers,
and every peer's cell carries the ratio tinyhttp / peer. The same table goes to a chart PNG and,
with --json, to a JSON file. The second form holds N idle keep-alive connections to tinyhttp from
another process and reports the server's resident memory per connection.

Every server runs in its own session and is stopped at the end (SIGTERM, then SIGKILL after a
deadline), whatever happens, Ctrl-C included. The peers come with `pip install -e '.[bench]'`;
wrk and nginx come from the system's packages.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    "ratio",
    "render_table",
    "summarize",
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


# --- parsing wrk's report ---------------------------------------------------------------------


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


# wrk prints sizes in binary units ("13.33MB" is 13.33 MiB) and times as us, ms, s, m, h.
_SIZE_UNITS = {"B": 1, "KB": KiB, "MB": MiB, "GB": GiB, "TB": 1024**4, "PB": 1024**5}
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_REQUESTS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TRANSFER = re.compile(r"^Transfer/sec:\s+([\d.]+)([KMGTP]?B)\s*$", re.MULTILINE)
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text: str) -> WrkResult:
    """Read requests/s, transfer/s, the 99th percentile latency and error counts from wrk."""
    requests = _REQUESTS.search(text)
    transfer = _TRANSFER.search(text)
    if requests is None or transfer is None:
        raise WrkParseError(f"no Requests/sec or Transfer/sec line in wrk's output:\n{text}")
    p99 = _P99.search(text)
    return WrkResult(
        requests_per_sec=float(requests[1]),
        bytes_per_sec=float(transfer[1]) * _SIZE_UNITS[transfer[2]],
        p99_seconds=float(p99[1]) * _TIME_UNITS[p99[2]] if p99 else None,
        errors=_error_count(text),
        error_lines="; ".join(
            m[0] for m in (_SOCKET_ERRORS.search(text), _NON_2XX.search(text)) if m
        ),
    )


def _error_count(text: str) -> int:
    socket_errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    counts = [int(n) for n in socket_errors.groups()] if socket_errors else []
    return sum(counts) + (int(non_2xx[1]) if non_2xx else 0)


# --- the table --------------------------------------------------------------------------------


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


METRICS = (
    Metric("rps_1k", "1 KB keep-alive, req/s (c50)", 1, ",.0f", True),
    Metric("p99_1k", "1 KB p99 latency, ms (c50)", 1e-3, ",.2f", False),
    Metric("mib_64k", "64 KiB, MiB/s (c50)", MiB, ",.0f", True),
    Metric("gib_256m", "256 MiB, GiB/s (c1, best of 3)", GiB, ",.2f", True),
    Metric("rps_close", "new connection each, req/s (c50)", 1, ",.0f", True),
    Metric("rps_c1000", "1 KB keep-alive, req/s (c1000)", 1, ",.0f", True),
    Metric("c1000_vs_c50", "req/s c1000 / req/s c50", 1, ".2f", True, compare=False),
    Metric("peak_rss", "peak RSS, MiB", MiB, ",.1f", False),
)
SUBJECT = "tinyhttp"  # the server every ratio is about


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """tinyhttp's figure over a peer's, or None when either is missing or the peer's is 0."""
    if ours is None or not theirs:
        return None
    return ours / theirs


def format_ratio(value: float | None) -> str:
    return "" if value is None else f"({value:.2f}x)"


Values = dict[str, dict[str, float]]  # server name -> metric key -> value in base units


def render_table(
    servers: Sequence[str], values: Values, flagged: frozenset[tuple[str, str]] = frozenset()
) -> str:
    """The results as aligned text: one row per metric that any server measured.

    `flagged` holds (server, metric) pairs measured while wrk counted errors; they get a `!`.
    """
    header = ["metric", "better", *servers]
    rows = [header]
    for metric in METRICS:
        if any(metric.key in values.get(name, {}) for name in servers):
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
    return "\n".join(line.rstrip() for line in [*lines, "", *_legend(flagged)])


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


def _legend(flagged: frozenset[tuple[str, str]]) -> list[str]:
    lines = [
        "(Nx) = tinyhttp / that peer: where higher is better, above 1 means tinyhttp is ahead;",
        "       where lower is better (latency, memory), below 1 means tinyhttp is ahead.",
    ]
    if flagged:
        lines.append("!    = wrk counted socket errors or non-2xx answers in that run (see notes).")
    return lines


# --- the files served -------------------------------------------------------------------------

SMALL_FILES = {"1k.bin": 1024, "64k.bin": 64 * KiB}
LARGE_FILES = {"256m.bin": 256 * MiB}


def write_files(root: Path, sizes: dict[str, int]) -> None:
    """Write real (not sparse) random bytes, dated an hour back so tinyhttp's cache takes them."""
    an_hour_ago = time.time() - 3600  # the cache skips files changed in the last 2 s
    for name, size in sizes.items():
        path = root / name
        with path.open("wb") as file:
            for start in range(0, size, MiB):
                file.write(os.urandom(min(MiB, size - start)))
        path.chmod(0o644)  # nginx's worker runs as another user when we are root
        os.utime(path, (an_hour_ago, an_hour_ago))


# --- the servers ------------------------------------------------------------------------------

Command = Callable[[Path, Path, int], list[str]]  # (root, work dir, port) -> argv


def tinyhttp_command(root: Path, work: Path, port: int, workers: int = 1) -> list[str]:
    command = [sys.executable, "-m", "tinyhttp", str(root), "--port", str(port), "--quiet"]
    return [*command, "--workers", str(workers)] if workers > 1 else command


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
        listen {host}:{port};
        root {root};
    }}
}}
"""


def nginx_command(root: Path, work: Path, port: int) -> list[str]:
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, host=HOST, port=port, root=root))
    # -e: the error log before the conf is read, or nginx tries /var/log/nginx first.
    paths = ["-p", str(work), "-c", str(conf), "-e", str(work / "nginx-error.log")]
    return [nginx_path() or "nginx", *paths]


def nginx_path() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class Peer:
    name: str
    command: Command
    missing: Callable[[], str | None]  # why it can't run here, or None


def _module(name: str) -> Callable[[], str | None]:
    return lambda: None if importlib.util.find_spec(name) else f"{name} is not installed"


SERVERS = (
    Peer(SUBJECT, tinyhttp_command, _module("tinyhttp")),
    Peer("http.server", http_server_command, lambda: None),
    Peer("twisted", twisted_command, _module("twisted")),
    Peer("aiohttp", aiohttp_command, _module("aiohttp")),
    Peer("uvicorn+h11", uvicorn_command, _module("uvicorn")),
    Peer("nginx", nginx_command, lambda: None if nginx_path() else "nginx is not on PATH"),
)


@dataclass
class Running:
    """A started server: its process (leader of its own session), its port and its log."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start(peer: Peer, root: Path, work: Path, extra: Sequence[str] = ()) -> Running:
    """Start a server in its own session, so Ctrl-C reaches us and we stop it in order."""
    port = free_port()
    log = work / f"{peer.name}.log"
    argv = [*peer.command(root, work, port), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
    return Running(peer.name, port, process, log)


def wait_ready(server: Running, deadline: float) -> str | None:
    """Poll until the server accepts and answers GET /1k.bin with 200; else say why not."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with status {server.process.returncode}: {log_tail(server.log)}"
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return check_answer(server)
        except OSError:
            time.sleep(0.05)
    return f"did not accept connections within {START_DEADLINE:.0f} s: {log_tail(server.log)}"


def check_answer(server: Running) -> str | None:
    """None if GET /1k.bin gets 200 and 1,024 bytes (nginx says 403 if it cannot read); else why."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=5)
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


def stop(server: Running) -> None:
    """SIGTERM, then SIGKILL to its whole process group if it is still there after a deadline."""
    process = server.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        # Not yet reaped, so its group id is still ours: workers die with their parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_DEADLINE)


# --- memory -----------------------------------------------------------------------------------


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


# --- loads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    key: str
    path: str
    connections: int
    extra: tuple[str, ...] = ()
    runs: int = 1  # more than one: the best is kept, servers alternated between runs


LOADS = (
    Load("small", "/1k.bin", 50, ("--latency",)),
    Load("medium", "/64k.bin", 50),
    Load("large", "/256m.bin", 1, runs=3),
    Load("close", "/1k.bin", 50, ("-H", "Connection: close")),
    Load("crowd", "/1k.bin", 1000),
)


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


def load_all(servers: list[Running], loads: Sequence[Load], duration: int, report: Report) -> None:
    """Each load on each server in turn; a load run several times alternates the servers."""
    for load in loads:
        for _ in range(load.runs):
            for server in servers:
                load_once(server, load, duration, report)


def load_once(server: Running, load: Load, duration: int, report: Report) -> None:
    argv = wrk_argv(load, duration, server.url(load.path))
    print(f"  {server.name:<12} {shlex.join(argv)}", flush=True)
    try:
        result = run_wrk(argv, duration)
    except (WrkParseError, subprocess.TimeoutExpired) as error:
        report.notes.append(f"{server.name}, {load.key}: {error}")
        return
    report.runs.setdefault(server.name, {}).setdefault(load.key, []).append(result)
    if result.errors:
        report.notes.append(f"{server.name}, {load.key}: {result.error_lines}")


def best(results: list[WrkResult]) -> WrkResult | None:
    return max(results, key=lambda r: r.bytes_per_sec, default=None)


# Which load each metric comes from, and how: (metric key, load key, what to take).
_METRIC_SOURCES: tuple[tuple[str, str, Callable[[WrkResult], float | None]], ...] = (
    ("rps_1k", "small", lambda r: r.requests_per_sec),
    ("p99_1k", "small", lambda r: r.p99_seconds),
    ("mib_64k", "medium", lambda r: r.bytes_per_sec),
    ("gib_256m", "large", lambda r: r.bytes_per_sec),
    ("rps_close", "close", lambda r: r.requests_per_sec),
    ("rps_c1000", "crowd", lambda r: r.requests_per_sec),
)


def summarize(report: Report) -> None:
    """Turn wrk runs into the table's values (base units), flagging runs that saw errors."""
    for name, runs in report.runs.items():
        values = report.values.setdefault(name, {})
        for metric_key, load_key, take in _METRIC_SOURCES:
            result = best(runs.get(load_key, []))
            value = take(result) if result else None
            if result is None or value is None:
                continue
            values[metric_key] = value
            if result.errors:
                report.flagged.add((name, metric_key))
        if "rps_c1000" in values and values.get("rps_1k"):
            values["c1000_vs_c50"] = values["rps_c1000"] / values["rps_1k"]


# --- the machine ------------------------------------------------------------------------------


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


# --- output -----------------------------------------------------------------------------------


def command_lines(loads: Sequence[Load], duration: int) -> list[str]:
    url = f"http://{HOST}:PORT"
    return [
        shlex.join(wrk_argv(load, duration, url + load.path))
        + (f"   (x{load.runs}, best kept)" if load.runs > 1 else "")
        for load in loads
    ]


def print_report(
    report: Report, loads: Sequence[Load], duration: int, info: dict[str, str]
) -> None:
    print()
    print(render_table(report.servers, report.values, frozenset(report.flagged)))
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
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


def _bar_chart(ax: Any, metric: Metric, report: Report) -> None:
    names = [s for s in report.servers if metric.key in report.values.get(s, {})]
    heights = [report.values[s][metric.key] / metric.scale for s in names]
    colors = ["tab:orange" if s == SUBJECT else "tab:blue" for s in names]
    bars = ax.bar(names, heights, color=colors)
    ax.bar_label(
        bars, labels=[_bar_text(metric, name, report.values) for name in names], fontsize=7
    )
    ax.set_title(f"{metric.label}\n({metric.better} is better)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.margins(y=0.2)


def _bar_text(metric: Metric, server: str, values: Values) -> str:
    """The value over each bar and, over a peer's, the ratio tinyhttp / peer below it."""
    value = metric.show(values[server][metric.key])
    return f"{value}\n{format_ratio(peer_ratio(metric, server, values))}".rstrip()


# --- the main run -----------------------------------------------------------------------------


def pick_peers(only: list[str] | None, workers: int = 1) -> tuple[list[Peer], list[str]]:
    """The servers to run (tinyhttp first, with `workers` processes) and why others are skipped."""
    chosen, skipped = [], []
    subject = Peer(
        SUBJECT, functools.partial(tinyhttp_command, workers=workers), SERVERS[0].missing
    )
    for peer in (subject, *SERVERS[1:]):
        if only is not None and peer.name not in only:
            continue
        reason = peer.missing()
        if reason is None:
            chosen.append(peer)
        else:
            skipped.append(f"{peer.name}: {reason}")
    return chosen, skipped


def start_all(peers: list[Peer], root: Path, work: Path, running: list[Running]) -> list[str]:
    """Start every server, then wait for each; those that fail are stopped and reported."""
    for peer in peers:
        running.append(start(peer, root, work))
    failed = []
    for server in list(running):
        reason = wait_ready(server, time.monotonic() + START_DEADLINE)
        if reason is not None:
            failed.append(f"{server.name} did not start: {reason}")
            stop(server)
            running.remove(server)
    return failed


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


def estimate(loads: Sequence[Load], servers: int, duration: int) -> str:
    runs = sum(load.runs for load in loads) * servers
    seconds = runs * (duration + 0.3) + 2 * servers  # wrk runs, plus start and stop
    return f"{runs} wrk runs of {duration} s: about {seconds / 60:.1f} minutes"


def benchmark(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    only = args.only.split(",") if args.only else None
    peers, skipped = pick_peers(only, args.workers)
    if args.workers > 1:
        print(f"tinyhttp runs with --workers {args.workers}", flush=True)
    loads = [load for load in LOADS if not (args.quick and load.key == "large")]
    duration = args.duration or (3 if args.quick else 10)
    print(f"{len(peers)} servers, {estimate(loads, len(peers), duration)}", flush=True)
    report = Report([])
    report.notes.extend(f"skipped {reason}" for reason in skipped)
    if args.workers > 1:
        report.notes.append(f"tinyhttp ran with --workers {args.workers}; every peer with one")
    with tempfile.TemporaryDirectory(prefix="tinyhttp-bench-") as temp:
        work, root = Path(temp), Path(temp) / "files"
        root.mkdir()
        work.chmod(0o755)  # nginx's worker (user nobody, when we are root) must reach the files
        write_files(root, SMALL_FILES | ({} if args.quick else LARGE_FILES))
        with servers_stopped_at_exit() as running:
            report.notes.extend(start_all(peers, root, work, running))
            report.servers = [server.name for server in running]
            load_all(running, loads, duration, report)
            for server in running:
                report.values.setdefault(server.name, {})["peak_rss"] = peak_rss(server.process.pid)
    summarize(report)
    info = machine()
    print_report(report, loads, duration, info)
    write_chart(Path(args.chart), report, info)
    if args.json:
        write_json(
            Path(args.json),
            {
                "machine": info,
                "commands": command_lines(loads, duration),
                "values": report.values,
                "notes": report.notes,
            },
        )
    return 0


# --- idle connections -------------------------------------------------------------------------

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


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="3 s per load, no 256 MiB test")
    p.add_argument("--duration", type=int, metavar="S", help="seconds per wrk run (default 10)")
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
    p.add_argument("--idle-client", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
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
