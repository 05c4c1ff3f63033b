"""scripts/bench.py's pure parts: reading wrk's report, ratios and the table. No load is run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_PATH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

# Real wrk 4.1.0 output, as it prints it (the last line has no newline).
WITH_LATENCY = """\
Running 1s test @ http://127.0.0.1:18777/1k.bin
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.40ms    5.77ms  55.27ms   90.52%
    Req/Sec     1.36k   711.99     2.48k    70.00%
  Latency Distribution
     50%    2.40ms
     75%    5.74ms
     90%    9.98ms
     99%   26.30ms
  1350 requests in 1.00s, 1.58MB read
Requests/sec:   1347.47
Transfer/sec:      1.58MB
"""

WITH_ERRORS = """\
Running 1s test @ http://127.0.0.1:18777/nope
  1 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.64ms    4.09ms  61.19ms   89.27%
    Req/Sec     1.63k   528.44     2.48k    80.00%
  1621 requests in 1.00s, 823.16KB read
  Socket errors: connect 11, read 2, write 0, timeout 7
  Non-2xx or 3xx responses: 1621
Requests/sec:   1619.80
Transfer/sec:    822.55KB"""

LARGE_FILE = """\
Running 10s test @ http://127.0.0.1:8080/256m.bin
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   130.51ms    9.84ms 161.06ms   71.43%
    Req/Sec     7.51      0.51     8.00    100.00%
  77 requests in 10.01s, 19.25GB read
Requests/sec:      7.69
Transfer/sec:      1.92GB
"""


def test_parses_requests_transfer_and_p99() -> None:
    result = bench.parse_wrk(WITH_LATENCY)
    assert result.requests_per_sec == pytest.approx(1347.47)
    assert result.bytes_per_sec == pytest.approx(1.58 * 1024**2)  # wrk's "MB" is MiB
    assert result.p99_seconds == pytest.approx(0.02630)
    assert result.errors == 0


def test_counts_socket_errors_and_non_2xx_answers() -> None:
    result = bench.parse_wrk(WITH_ERRORS)
    assert result.errors == 11 + 2 + 0 + 7 + 1621
    assert result.error_lines == (
        "Socket errors: connect 11, read 2, write 0, timeout 7; Non-2xx or 3xx responses: 1621"
    )
    assert result.bytes_per_sec == pytest.approx(822.55 * 1024)
    assert result.p99_seconds is None  # run without --latency


def test_gigabytes_per_second() -> None:
    result = bench.parse_wrk(LARGE_FILE)
    assert result.bytes_per_sec / 1024**3 == pytest.approx(1.92)
    assert result.requests_per_sec == pytest.approx(7.69)


@pytest.mark.parametrize(
    ("line", "seconds"),
    [("872.00us", 872e-6), ("1.50s", 1.5), ("2.00m", 120.0), ("26.30ms", 0.0263)],
)
def test_latency_units(line: str, seconds: float) -> None:
    text = WITH_LATENCY.replace("26.30ms", line)
    assert bench.parse_wrk(text).p99_seconds == pytest.approx(seconds)


@pytest.mark.parametrize(("unit", "scale"), [("B", 1), ("KB", 1024), ("GB", 1024**3)])
def test_transfer_units(unit: str, scale: int) -> None:
    text = WITH_LATENCY.replace("Transfer/sec:      1.58MB", f"Transfer/sec:      1.58{unit}")
    assert bench.parse_wrk(text).bytes_per_sec == pytest.approx(1.58 * scale)


def test_output_without_totals_is_an_error() -> None:
    with pytest.raises(bench.WrkParseError):
        bench.parse_wrk("unable to connect to 127.0.0.1:18777 Connection refused")


def test_ratio_is_tinyhttp_over_peer_and_none_when_missing() -> None:
    assert bench.ratio(300.0, 100.0) == pytest.approx(3.0)
    assert bench.ratio(None, 100.0) is None
    assert bench.ratio(300.0, None) is None
    assert bench.ratio(300.0, 0.0) is None
    assert bench.format_ratio(1.5) == "(1.50x)"
    assert bench.format_ratio(None) == ""


VALUES = {
    "tinyhttp": {"rps_1k": 20000.0, "p99_1k": 0.004, "peak_rss": 30 * 1024**2},
    "twisted": {"rps_1k": 8000.0, "p99_1k": 0.010, "peak_rss": 60 * 1024**2},
    "nginx": {"rps_1k": 160000.0, "p99_1k": 0.001},
}


def _rows(table: str) -> dict[str, str]:
    """Table lines by their metric label (the text before two spaces)."""
    return {line.split("  ")[0]: line for line in table.splitlines() if "  " in line}


def test_table_has_a_column_per_server_and_ratios_for_peers() -> None:
    table = bench.render_table(["tinyhttp", "twisted", "nginx"], VALUES)
    header = table.splitlines()[0].split()
    assert header == ["metric", "better", "tinyhttp", "twisted", "nginx"]
    rows = _rows(table)
    small = rows["1 KB keep-alive, req/s (c50)"]
    assert small.split()[-6:] == ["higher", "20,000", "8,000", "(2.50x)", "160,000", "(0.12x)"]
    latency = rows["1 KB p99 latency, ms (c50)"]
    assert latency.split()[-6:] == ["lower", "4.00", "10.00", "(0.40x)", "1.00", "(4.00x)"]


def test_missing_values_show_a_dash_and_unmeasured_rows_are_left_out() -> None:
    table = bench.render_table(["tinyhttp", "twisted", "nginx"], VALUES)
    rss = _rows(table)["peak RSS, MiB"]
    assert rss.split()[-4:] == ["30.0", "60.0", "(0.50x)", "-"]
    assert "256 MiB" not in table  # nobody measured it (a --quick run)


def test_columns_line_up() -> None:
    table = bench.render_table(["tinyhttp", "twisted", "nginx"], VALUES)
    lines = table.split("\n\n")[0].splitlines()
    assert len({len(line) for line in lines}) == 1  # numbers are right-aligned to one width


def test_legend_says_which_direction_is_better() -> None:
    table = bench.render_table(["tinyhttp", "twisted"], VALUES)
    assert "higher is better, above 1 means tinyhttp is ahead" in table
    assert "lower is better (latency, memory), below 1 means tinyhttp is ahead" in table


def test_cells_measured_with_errors_are_marked() -> None:
    table = bench.render_table(["tinyhttp", "twisted"], VALUES, frozenset({("twisted", "rps_1k")}))
    assert "8,000! (2.50x)" in table
    assert "wrk counted socket errors" in table


def test_a_ratio_of_ratios_gets_no_ratio() -> None:
    values = {"tinyhttp": {"c1000_vs_c50": 0.9}, "twisted": {"c1000_vs_c50": 0.8}}
    row = _rows(bench.render_table(["tinyhttp", "twisted"], values))["req/s c1000 / req/s c50"]
    assert row.split()[-2:] == ["0.90", "0.80"]


def test_summarize_keeps_the_best_run_and_derives_the_crowd_ratio() -> None:
    report = bench.Report(["tinyhttp"])
    run = bench.WrkResult
    report.runs["tinyhttp"] = {
        "small": [run(10000.0, 1e7, 0.005, 0)],
        "large": [run(5.0, 1.5 * 1024**3, None, 0), run(6.0, 1.9 * 1024**3, None, 3)],
        "crowd": [run(9000.0, 9e6, None, 0)],
    }
    bench.summarize(report)
    values = report.values["tinyhttp"]
    assert values["rps_1k"] == 10000.0
    assert values["p99_1k"] == 0.005
    assert values["gib_256m"] == pytest.approx(1.9 * 1024**3)
    assert values["c1000_vs_c50"] == pytest.approx(0.9)
    assert report.flagged == {("tinyhttp", "gib_256m")}


@pytest.mark.parametrize(
    ("buffer", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 200),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab", None),
        (b"HTTP/1.1 200 OK\r\nContent-Len", None),
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 404),
    ],
)
def test_idle_client_knows_when_an_answer_is_whole(buffer: bytes, status: int | None) -> None:
    assert bench.parse_response_status(buffer) == status


def test_wrk_commands_are_the_documented_ones() -> None:
    lines = bench.command_lines(bench.LOADS, 10)
    assert lines[0] == "wrk -t1 -c50 -d10s --latency http://127.0.0.1:PORT/1k.bin"
    assert "wrk -t1 -c1 -d10s http://127.0.0.1:PORT/256m.bin   (x3, best kept)" in lines
    assert "wrk -t1 -c50 -d10s -H 'Connection: close' http://127.0.0.1:PORT/1k.bin" in lines
    assert "wrk -t1 -c1000 -d10s http://127.0.0.1:PORT/1k.bin" in lines
