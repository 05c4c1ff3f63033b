"""The README's "Tour of the source" is true: every step names a function that exists, and one
real request, traced with sys.setprofile, calls them for the first time in the README's order."""

from __future__ import annotations

import importlib
import io
import os
import queue
import re
import signal
import socket
import sys
import threading
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

from tests.conftest import BIG_SIZE, TIMEOUT, Reader

README = Path(__file__).resolve().parent.parent / "README.md"
# One step: `1. `tinyhttp/server.py` `Server.serve()` — what happens there`
STEP = re.compile(r"^\d+\.\s+`(tinyhttp/[\w/]+\.py)`\s+`([\w.]+)\(\)`", re.MULTILINE)
# A place in the code anywhere in a table row: `tinyhttp/listen.py` `open_listener()`
PLACE = re.compile(r"`(tinyhttp/[\w/]+\.py)`\s+`([\w.]+)\(\)`")


def _section(title: str) -> str:
    """The text of one `## title` section of the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def tour() -> list[tuple[str, str]]:
    """The tour's steps as (file, function), in the README's order."""
    return STEP.findall(_section("Tour of the source"))


def resolve(path: str, name: str) -> CodeType:
    """The code object of `name` (a function, or Class.method) in the module at `path`."""
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part)
    code: CodeType = target.__code__  # a property or a class here has none: the step is wrong
    return code


def test_the_tour_is_a_list_of_real_functions() -> None:
    steps = tour()
    assert len(steps) >= 10, steps
    assert steps[0] == ("tinyhttp/__main__.py", "main")
    assert len(set(steps)) == len(steps), "a step is listed twice"
    for path, name in steps:
        assert (README.parent / path).is_file(), path
        code = resolve(path, name)
        assert Path(code.co_filename).name == Path(path).name, f"{name} is not in {path}"


def test_every_place_in_the_concept_table_exists() -> None:
    places = PLACE.findall(_section("Concepts and where the code shows them"))
    assert len(places) >= 8, places
    for path, name in places:
        resolve(path, name)


class _Announcements(io.StringIO):
    """Stands in for stdout: hands the port in tinyhttp's first line to the client thread."""

    def __init__(self, ports: queue.Queue[int]) -> None:
        super().__init__()
        self.ports = ports

    def write(self, text: str) -> int:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", text)
        if found:
            self.ports.put(int(found[1]))
        return super().write(text)


def _client(ports: queue.Queue[int], results: list[object]) -> None:
    """A request for a file big enough for sendfile, and a second one on the same connection
    (so the server must have started its next cycle); then hang up and stop the server."""
    try:
        port = ports.get(timeout=TIMEOUT)
    except queue.Empty:
        results.append("tinyhttp never printed its address")
        return  # no signal: tinyhttp's handler may not be there to catch it
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            reader = Reader(sock)
            for path in (b"/big.bin", b"/hello.txt"):
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path)
                results.append(reader.response())
    except Exception as error:
        results.append(error)
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: tinyhttp drains and main() returns


def test_one_request_follows_the_tour_in_order(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyhttp.__main__ import main

    steps = tour()
    wanted = {resolve(path, name): f"{path} {name}()" for path, name in steps}
    first_calls: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            step = wanted.get(frame.f_code)
            if step is not None and step not in first_calls:
                first_calls.append(step)

    ports: queue.Queue[int] = queue.Queue()
    results: list[object] = []
    monkeypatch.setattr(sys, "stdout", _Announcements(ports))
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    client = threading.Thread(target=_client, args=(ports, results), daemon=True)
    client.start()
    sys.setprofile(profile)  # this thread only: the server's loop, not the client
    try:
        status = main([str(site), "--port", "0", "--quiet"])
    finally:
        sys.setprofile(None)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        client.join(TIMEOUT)

    assert status == 0
    assert len(results) == 2, results
    big, small = results
    assert getattr(big, "status", big) == 200 and getattr(small, "status", small) == 200
    assert len(getattr(big, "body", b"")) == BIG_SIZE
    missing = [step for step in wanted.values() if step not in first_calls]
    assert not missing, f"never called while serving one request: {missing}"
    assert first_calls == list(wanted.values()), "the README lists these in another order"
