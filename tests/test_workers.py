"""--workers N: processes sharing one port, replaced when they die, drained on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import TIMEOUT, Reader, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads worker processes from /proc"
)


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.fixture
def workers(site: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyhttp", str(site), "--port", "0", "--workers", "2", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, line
    yield process, int(match.group(1))
    if process.poll() is None:
        process.terminate()  # SIGTERM: the workers drain too
        try:
            process.wait(TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(TIMEOUT)


def test_two_workers_serve_and_are_replaced(workers) -> None:
    process, port = workers
    assert wait_until(lambda: len(children(process.pid)) == 2)
    url = f"http://127.0.0.1:{port}/hello.txt"
    assert requests.get(url, timeout=TIMEOUT).content == b"hello, world\n"
    victim = min(children(process.pid))
    os.kill(victim, signal.SIGKILL)
    assert wait_until(
        lambda: victim not in children(process.pid) and len(children(process.pid)) == 2
    )
    for _ in range(10):
        assert requests.get(url, timeout=TIMEOUT).status_code == 200


def test_the_port_answers_as_soon_as_it_is_announced(workers) -> None:
    """The supervisor opens the listening sockets before it says where it serves: a script
    that connects the moment it reads that line is not refused while the workers start."""
    _, port = workers
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert Reader(sock).response().status == 200


def test_connections_waiting_on_a_dead_worker_are_served_by_its_successor(workers) -> None:
    """Each worker's SO_REUSEPORT socket stays with the supervisor: the connections the kernel
    queued on it while its worker hung are answered by the replacement, not reset."""
    process, port = workers
    assert wait_until(lambda: len(children(process.pid)) == 2)
    pids = children(process.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # hung: connections queue in the kernel, unaccepted
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(6)]
    try:
        for sock in waiting:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for sock in waiting:
            assert Reader(sock).response().body == b"hello, world\n"
    finally:
        for sock in waiting:
            sock.close()
    assert not pids & children(process.pid)


def test_sigterm_stops_every_worker(workers) -> None:
    process, _ = workers
    assert wait_until(lambda: len(children(process.pid)) == 2)
    pids = children(process.pid)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT + 5)
    assert process.returncode == 0, err
    assert out.strip().endswith("Stopped.")
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_second_server_is_told_the_port_is_taken(workers) -> None:
    _, port = workers
    second = subprocess.run(
        [sys.executable, "-m", "tinyhttp", "--port", str(port), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 5,
    )
    assert second.returncode == 2
    assert f"port {port} is in use" in second.stderr


def test_workers_stop_when_the_supervisor_is_killed(workers) -> None:
    process, port = workers
    assert wait_until(lambda: len(children(process.pid)) == 2)
    pids = children(process.pid)
    process.kill()  # SIGKILL: no chance to tell the workers anything
    process.wait(TIMEOUT)
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=TIMEOUT + 5)
    with pytest.raises(OSError):
        requests.get(f"http://127.0.0.1:{port}/hello.txt", timeout=TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; init reaps it
