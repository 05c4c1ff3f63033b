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
import re
import socket
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
        for _ in range(count):
            sock.sendall(REQUEST + end)
            answer = b""
            while (status := bench.parse_response_status(answer)) is None:
                data = sock.recv(65536)
                if not data:
                    raise MeasureError("the server closed the connection")
                answer += data
            if status != 200:
                raise MeasureError(f"answered {status}, not 200")


@contextlib.contextmanager
def under_valgrind(peer: bench.Peer, root: Path, work: Path) -> Iterator[int]:
    """Run the peer under callgrind, started as bench.py starts it, while the block runs,
    yielding its port; `work`/callgrind.txt is complete once the block has ended."""
    report = work / "callgrind.txt"
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    server = bench.start(peer, root, work, wrap=[*valgrind, f"--log-file={report}"])
    try:
        reason = bench.wait_ready(server, time.monotonic() + START_DEADLINE)
        if reason is not None:
            raise MeasureError(reason)
        yield server.port
    finally:
        bench.stop(server, grace=TIMEOUT)  # callgrind writes its report as the server exits
    if not report.exists():
        raise MeasureError(f"no callgrind report: {bench.log_tail(server.log)}")


def count(peer: bench.Peer, root: Path, work: Path, requests: int, close: bool) -> int:
    """The instructions one run of the peer executes serving `requests` requests."""
    work = work / f"{peer.name}.{requests}"  # a folder of its own: two runs go at once
    work.mkdir(exist_ok=True)
    with under_valgrind(peer, root, work) as port:
        send_requests(port, requests, close)
    return collected((work / "callgrind.txt").read_text())


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
