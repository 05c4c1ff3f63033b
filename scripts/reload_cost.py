"""What `tinyhttp --reload` costs while nothing happens: CPU on a 5,000-file tree, and memory
for 200 open event streams (one per browser tab that would hold one).

    python scripts/reload_cost.py [--seconds 20]

It builds the tree in a temporary folder (250 folders of 20 files: HTML, CSS, JS and PNG
names), starts tinyhttp on it, opens one stream and reads the server's CPU time from
/proc/PID/stat over the idle period, then opens 200 more streams and reads its VmRSS.
Linux only (/proc); loopback only.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAM = b"GET /.well-known/tinyhttp/reload HTTP/1.1\r\nHost: localhost\r\n\r\n"


def build_tree(root: Path) -> int:
    count = 0
    for folder in range(250):
        sub = root / f"d{folder:03}"
        sub.mkdir()
        for n in range(20):
            (sub / f"f{n:02}{('.html', '.css', '.js', '.png')[n % 4]}").write_text("x")
            count += 1
    return count


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(found[1]) if found else 0


def open_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(STREAM)
    sock.recv(4096)  # the head and the opening `retry:` line
    return sock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idle period to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tinyhttp-reload-") as temp:
        files = build_tree(Path(temp))
        command = [sys.executable, "-m", "tinyhttp", temp, "--port", "0", "-q", "--reload"]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            found = re.search(r":(\d+)/", server.stdout.readline())
            assert found, "tinyhttp did not start"
            port = int(found[1])
            streams = [open_stream(port)]
            before, started = cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.seconds)  # the idle period being measured
            busy = cpu_seconds(server.pid) - before
            share = 100 * busy / (time.monotonic() - started)
            print(f"{files} files, one stream open: {share:.2f} % of a core while idle")
            rss = rss_kib(server.pid)
            streams += [open_stream(port) for _ in range(200)]
            time.sleep(1.0)  # let the loop settle the newcomers
            grown = (rss_kib(server.pid) - rss) / 1024
            print(
                f"200 more streams: RSS {rss} KiB -> {rss_kib(server.pid)} KiB (+{grown:.2f} MiB)"
            )
            for sock in streams:
                sock.close()
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
