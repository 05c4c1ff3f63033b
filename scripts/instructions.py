"""Instructions per request, counted by Valgrind: a steady measure beside bench.py's CPU time.

    python scripts/instructions.py [--requests 1000] [--only NAME,...] [--log] [--close]

CPU time per request moves by 10 % and more between runs on a shared machine; the number of
instructions a server executes for a request does not. Each server (tinyhttp --quiet, the
floor probe, uvicorn+h11 and twisted web when installed, started exactly as bench.py starts
them; --log adds tinyhttp with its access log on) runs twice under `valgrind
--tool=callgrind`. One client sends keep-alive GETs for /1k.bin, one at a time (--close: each
on a new connection): WARMUP to the first run, WARMUP + N to the second. The difference in
instructions, divided by N, is what one request costs, start-up and shut-down cancelled out.

It counts user space only: a system call is one instruction and the kernel's work in it is
not counted, so the time spent in system calls (which bench.py's CPU rows include) is left out.
Needs valgrind (`apt-get install valgrind`). Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import bench  # scripts/bench.py: run as a script, this file's folder comes first on sys.path

WARMUP = 200  # requests that fill caches before the counted ones
PEERS = (bench.SUBJECT, bench.FLOOR, "uvicorn+h11", "twisted")
REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: instructions.py\r\n"
# Under Valgrind a server starts 20 to 50 times slower than it would.
START_DEADLINE = 300.0
TIMEOUT = 120.0  # for each answer, and for a server to exit once told to
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)


class MeasureError(RuntimeError):
    """A server did not start, answer, or report its count."""


@dataclass(frozen=True)
class Result:
    name: str
    per_request: float  # instructions


def collected(report: str) -> int:
    """The instruction count in callgrind's report ("==PID== Collected : N")."""
    found = _COLLECTED.search(report)
    if found is None:
        raise MeasureError("callgrind reported no count")
    return int(found.group(1))


def per_request(short: int, long: int, extra: int) -> float:
    """Instructions per request: the longer run's count beyond the shorter one's, shared over
    the `extra` requests only it served."""
    if extra <= 0 or long < short:
        raise MeasureError(f"cannot share {long - short} instructions over {extra} requests")
    return (long - short) / extra


def answer_length(head: bytes) -> int:
    """The body length an answer's head announces (every answer here has Content-Length)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise MeasureError(f"an answer without Content-Length: {head[:80]!r}")


def send_requests(port: int, count: int, close: bool = False) -> None:
    """`count` GETs, each answer read whole before the next: all on one connection, or
    (`close`) each on a new one that the server closes after its answer."""
    if close:
        for _ in range(count):
            _exchange(port, 1, b"Connection: close\r\n\r\n")
    else:
        _exchange(port, count, b"\r\n")


def _exchange(port: int, count: int, end: bytes) -> None:
    with socket.create_connection((bench.HOST, port), timeout=TIMEOUT) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(REQUEST + end)
            while b"\r\n\r\n" not in buffer:
                buffer += _recv(sock)
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                raise MeasureError(f"answered {head.split(b' ', 2)[1:2]}, not 200")
            length = answer_length(head)
            while len(buffer) < length:
                buffer += _recv(sock)
            buffer = buffer[length:]


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise MeasureError("the server closed the connection")
    return data


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MeasureError(f"exited with {process.returncode}: {bench.log_tail(log)}")
        try:
            with socket.create_connection((bench.HOST, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)  # nothing to wait on but the port opening
    raise MeasureError(f"did not listen within {START_DEADLINE:.0f} s: {bench.log_tail(log)}")


@contextlib.contextmanager
def under_valgrind(peer: bench.Peer, root: Path, work: Path, report: Path) -> Iterator[int]:
    """Run the peer under callgrind while the block runs, yielding its port; callgrind's
    `report` is complete once the block has ended (the server has exited by then)."""
    port = bench.free_port()
    log = report.with_suffix(".log")
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    argv = [*valgrind, f"--log-file={report}", *peer.command(root, work, port)]
    env = {**os.environ, **dict(peer.env)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=peer.cwd, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        wait_ready(process, port, log)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)  # callgrind writes its report as the server exits
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if not report.exists():
        raise MeasureError(f"no callgrind report: {bench.log_tail(log)}")


def count(peer: bench.Peer, root: Path, work: Path, requests: int, close: bool) -> int:
    """The instructions one run of the peer executes serving `requests` requests."""
    report = work / f"{peer.name}.{requests}.callgrind"
    with under_valgrind(peer, root, work, report) as port:
        send_requests(port, requests, close)
    return collected(report.read_text())


def measure(peer: bench.Peer, root: Path, work: Path, requests: int, close: bool = False) -> Result:
    """Both runs at once (a count hardly depends on timing): half the wait on two cores."""
    runs = (WARMUP, WARMUP + requests)
    with ThreadPoolExecutor(max_workers=2) as pool:
        short, long = pool.map(lambda n: count(peer, root, work, n, close), runs)
    return Result(peer.name, per_request(short, long, requests))


def table(results: list[Result]) -> str:
    """One line per server: instructions per request, and tinyhttp's ratio to it."""
    ours = next((r.per_request for r in results if r.name == bench.SUBJECT), None)
    lines = [f"{'server':<14}  {'instructions/request':>20}  tinyhttp / it"]
    for result in results:
        mine = result.name == bench.SUBJECT
        share = "" if mine else bench.format_ratio(bench.ratio(ours, result.per_request))
        lines.append(f"{result.name:<14}  {result.per_request:>20,.0f}  {share}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="counted requests (1000)")
    parser.add_argument("--only", help=f"servers to run: {','.join(PEERS)}")
    parser.add_argument("--log", action="store_true", help="add tinyhttp with its access log on")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else list(PEERS)
    chosen, skipped = bench.pick_peers(wanted, log=args.log)  # those installed, and why not
    peers = [p for p in chosen if p.name in (*PEERS, f"{bench.SUBJECT}+log")]
    for reason in skipped:
        print(f"skipped: {reason}", flush=True)
    with tempfile.TemporaryDirectory(prefix="instructions-") as folder:
        root, work = Path(folder) / "www", Path(folder)
        root.mkdir()
        bench.write_files(root, {"1k.bin": bench.KiB})
        results = []
        for peer in peers:
            print(f"{peer.name}: {WARMUP} and {WARMUP + args.requests} requests", flush=True)
            try:
                results.append(measure(peer, root, work, args.requests, args.close))
            except (MeasureError, OSError) as error:
                print(f"{peer.name}: failed: {error}", flush=True)
    print(table(results))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
