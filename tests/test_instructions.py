"""scripts/instructions.py: callgrind's count read right, shared over the right requests, and
one real run of tinyhttp under Valgrind."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from . import test_bench  # loads scripts/bench.py as the module `bench`, which this one imports

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "instructions.py"


def _load() -> ModuleType:
    assert "bench" in sys.modules and test_bench.bench is sys.modules["bench"]
    spec = importlib.util.spec_from_file_location("instructions", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["instructions"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


instructions = _load()

# The end of a real callgrind report (valgrind 3.19), as --log-file writes it.
REPORT = """\
==31150== Callgrind, a call-graph generating cache profiler
==31150== Command: python floor_probe.py /tmp/www --port 19103
==31150==
==31150== Events    : Ir
==31150== Collected : 308021316
==31150==
==31150== I   refs:      308,021,316
"""


def test_reads_the_collected_count() -> None:
    assert instructions.collected(REPORT) == 308_021_316


def test_a_report_without_a_count_is_an_error() -> None:
    with pytest.raises(instructions.MeasureError):
        instructions.collected("==1== Command: python\n")


def test_the_longer_runs_extra_instructions_are_shared_over_its_extra_requests() -> None:
    assert instructions.per_request(300_000_000, 800_000_000, 1000) == 500_000.0


@pytest.mark.parametrize(("short", "long", "extra"), [(10, 5, 100), (5, 10, 0)])
def test_nonsense_counts_are_refused(short: int, long: int, extra: int) -> None:
    with pytest.raises(instructions.MeasureError):
        instructions.per_request(short, long, extra)


def test_answers_are_read_by_content_length_in_any_case() -> None:
    # The client reads answers with bench.py's parse_response_status.
    head = b"HTTP/1.1 200 OK\r\nDate: x\r\ncontent-LENGTH: 4\r\nServer: y\r\n\r\n"
    assert instructions.bench.parse_response_status(head + b"abc") is None
    assert instructions.bench.parse_response_status(head + b"abcd") == 200


def test_table_gives_tinyhttps_ratio_to_each_peer() -> None:
    Result = instructions.Result
    text = instructions.table([Result("tinyhttp", 500_000.0), Result("floor probe", 400_000.0)])
    lines = text.splitlines()
    assert lines[1].split() == ["tinyhttp", "500,000"]
    assert lines[2].split()[-2:] == ["400,000", "(1.25x)"]


@pytest.mark.timeout(300)  # start-up under Valgrind is 20 to 50 times slower
def test_counts_tinyhttp_under_valgrind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real, short measurement: tinyhttp started as bench.py starts it, under callgrind."""
    if shutil.which("valgrind") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("valgrind is missing: CI must run the instruction count")
        pytest.skip("valgrind is not installed")
    monkeypatch.setattr(instructions, "WARMUP", 5)
    root = tmp_path / "www"
    root.mkdir()
    (root / "1k.bin").write_bytes(os.urandom(1024))
    peer = next(p for p in instructions.bench.SERVERS if p.name == "tinyhttp")
    kept_alive = instructions.measure(peer, root, tmp_path, 200)
    each_new = instructions.measure(peer, root, tmp_path, 200, close=True)
    # Python serving one small file: hundreds of thousands of instructions, not tens of
    # millions (which would mean start-up was counted as the requests' work).
    assert 50_000 < kept_alive.per_request < 5_000_000
    # Accepting and closing a connection is work on top of the request's.
    assert kept_alive.per_request < each_new.per_request < 5_000_000
