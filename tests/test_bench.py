"""scripts/bench.py's pure parts (wrk's report, CPU time, ratios, the table) and the floor probe."""

from __future__ import annotations

import importlib.util
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import h11
import pytest

BENCH_PATH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
FLOOR_PROBE = BENCH_PATH.parent / "floor_probe.py"
TIMEOUT = 10.0  # every wait and socket call gives up after this long


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
    assert result.requests == 1350  # completed, for CPU per request
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
    assert "lower is better (latency, CPU, memory), below 1 means tinyhttp is ahead" in table


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


# --- CPU per request -----------------------------------------------------------------------

# A /proc/PID/stat line (proc(5)) whose name holds a space and a ")": utime 1234, stime 567.
STAT_LINE = (
    "4242 (python -m ti)ny) S 1 4242 4242 0 -1 4194560 3121 0 0 0 1234 567 7 8 20 0 1 0 "
    "912345 28672000 4321 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0"
)


def test_cpu_ticks_are_utime_plus_stime_after_the_last_parenthesis() -> None:
    assert bench.stat_cpu_ticks(STAT_LINE) == 1234 + 567


def test_cpu_ticks_of_a_real_stat_line() -> None:
    line = Path(f"/proc/{os.getpid()}/stat")
    if not line.exists():
        pytest.skip("no /proc here")
    times = os.times()
    ticks = bench.stat_cpu_ticks(line.read_text())
    assert ticks / bench.CLOCK_TICKS <= times.user + times.system + 1.0
    assert bench.tree_cpu_seconds(os.getpid()) >= ticks / bench.CLOCK_TICKS


def test_cpu_per_request_in_seconds() -> None:
    assert bench.per_request(1.5, 10_000) == pytest.approx(150e-6)
    assert bench.per_request(1.5, 0) is None  # wrk completed nothing
    assert bench.per_request(None, 10_000) is None
    assert bench.cpu_used(10.0, 11.25) == pytest.approx(1.25)
    assert bench.cpu_used(None, 11.0) is None
    assert bench.cpu_used(11.0, 10.0) is None  # a member of the tree vanished
    run = bench.WrkResult(2000.0, 2e6, None, 0, requests=20_000, cpu_seconds=3.0)
    assert run.cpu_per_request == pytest.approx(150e-6)


def test_cpu_rows_show_microseconds_with_ratios_where_lower_is_better() -> None:
    values = {
        "tinyhttp": {"rps_1k": 8000.0, "cpu_1k": 240e-6},
        "floor probe": {"rps_1k": 12000.0, "cpu_1k": 80e-6},
        "nginx": {"rps_1k": 40000.0, "cpu_1k": 24e-6},
    }
    table = bench.render_table(["tinyhttp", "floor probe", "nginx"], values)
    row = _rows(table)["1 KB keep-alive, CPU µs/req (c50)"]
    assert row.split()[-6:] == ["lower", "240.0", "80.0", "(3.00x)", "24.0", "(10.00x)"]
    assert "CPU time is far steadier than" in table
    assert "a measuring stick, not a server" in table  # the floor probe's column is explained


def test_cpu_rows_sit_beside_their_load() -> None:
    labels = [metric.label for metric in bench.METRICS]
    assert labels.index("1 KB keep-alive, CPU µs/req (c50)") == 1 + labels.index(
        "1 KB keep-alive, req/s (c50)"
    )
    assert all(m.key.startswith("cpu_") == ("CPU µs/req" in m.label) for m in bench.METRICS)
    assert all(not m.higher_is_better for m in bench.METRICS if m.key.startswith("cpu_"))


def test_no_cpu_legend_without_cpu_rows() -> None:
    assert "CPU time is far steadier" not in bench.render_table(["tinyhttp", "twisted"], VALUES)
    assert "measuring stick" not in bench.render_table(["tinyhttp", "twisted"], VALUES)


def test_summarize_takes_the_cpu_of_the_best_run() -> None:
    report = bench.Report(["tinyhttp"])
    run = bench.WrkResult
    report.runs["tinyhttp"] = {
        "small": [run(10000.0, 1e7, 0.005, 0, requests=50_000, cpu_seconds=5.0)],
        "large": [
            run(5.0, 1.5 * 1024**3, None, 0, requests=30, cpu_seconds=3.0),
            run(6.0, 1.9 * 1024**3, None, 0, requests=40, cpu_seconds=2.0),
        ],
        "close": [run(3000.0, 3e6, None, 0, requests=0, cpu_seconds=1.0)],
    }
    bench.summarize(report)
    values = report.values["tinyhttp"]
    assert values["cpu_1k"] == pytest.approx(100e-6)
    assert values["cpu_256m"] == pytest.approx(2.0 / 40)  # the faster run's, not the mean
    assert "cpu_close" not in values  # no completed requests: no figure


def test_summarize_takes_the_median_of_several_rounds() -> None:
    report = bench.Report(["tinyhttp"])
    run = bench.WrkResult
    report.runs["tinyhttp"] = {
        "small": [
            run(10000.0, 1e7, 0.005, 0, requests=50_000, cpu_seconds=5.0),
            run(4000.0, 4e6, 0.009, 0, requests=20_000, cpu_seconds=6.0),  # a noisy round
            run(9000.0, 9e6, 0.006, 0, requests=45_000, cpu_seconds=5.4),
        ]
    }
    bench.summarize(report)
    values = report.values["tinyhttp"]
    assert values["rps_1k"] == 9000.0
    assert values["cpu_1k"] == pytest.approx(5.4 / 45_000)


def test_a_wanted_row_nobody_measured_shows_dashes() -> None:
    table = bench.render_table(
        ["tinyhttp", "nginx"], VALUES, wanted=frozenset({"rps_tls_1k", "cpu_tls_1k"})
    )
    row = _rows(table)["TLS 1 KB keep-alive, req/s (c50)"]
    assert row.split()[-3:] == ["higher", "-", "-"]
    assert "not measured there" in table


def test_wanted_rows_follow_the_loads_run() -> None:
    quick = bench.wanted_metrics(bench.pick_loads(quick=True, tls=True))
    assert {"rps_tls_1k", "cpu_tls_1k", "cpu_1k", "cpu_close"} <= quick
    assert not {"gib_256m", "cpu_256m", "gib_tls_256m"} & quick
    plain = bench.wanted_metrics(bench.pick_loads(quick=False, tls=False))
    assert "cpu_256m" in plain and "rps_tls_1k" not in plain


# --- peers and loads -----------------------------------------------------------------------


def _load(key: str) -> Any:
    return next(load for load in bench.LOADS if load.key == key)


def test_the_floor_probe_skips_only_the_large_file() -> None:
    probe = next(peer for peer in bench.SERVERS if peer.name == "floor probe")
    runs = {
        load.key for load in bench.pick_loads(quick=False, tls=False) if bench.applies(load, probe)
    }
    assert runs == {"small", "medium", "close", "crowd"}


def test_tls_loads_run_only_on_tls_twins(tmp_path: Path) -> None:
    cert = bench.Certificate(tmp_path / "cert.pem", tmp_path / "key.pem")
    peers, _ = bench.pick_peers(["tinyhttp", "twisted", "nginx"], cert=cert)
    twins = [peer for peer in peers if peer.tls]
    assert {peer.name for peer in twins} <= {"tinyhttp", "nginx"}
    assert "tinyhttp (TLS)" in {peer.label for peer in twins}
    plain = next(peer for peer in peers if peer.name == "tinyhttp" and not peer.tls)
    assert bench.applies(_load("tls_small"), twins[0])
    assert not bench.applies(_load("small"), twins[0])
    assert not bench.applies(_load("tls_small"), plain)


def test_tinyhttp_commands_for_log_and_tls(tmp_path: Path) -> None:
    cert = bench.Certificate(tmp_path / "c.pem", tmp_path / "k.pem")
    quiet = bench.tinyhttp_command(tmp_path, tmp_path, 8080)
    assert "--quiet" in quiet
    assert "--quiet" not in bench.tinyhttp_command(tmp_path, tmp_path, 8080, quiet=False)
    tls = bench.tinyhttp_command(tmp_path, tmp_path, 8080, tls=cert)
    assert tls[-4:] == ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]


def test_nginx_tls_conf_listens_with_ssl(tmp_path: Path) -> None:
    cert = bench.Certificate(tmp_path / "c.pem", tmp_path / "k.pem")
    bench.nginx_command(tmp_path, tmp_path, 8443, tls=cert)
    conf = (tmp_path / "nginx-tls" / "nginx.conf").read_text()
    assert "listen 127.0.0.1:8443 ssl;" in conf
    assert f"ssl_certificate {cert.cert};" in conf and f"ssl_certificate_key {cert.key};" in conf
    bench.nginx_command(tmp_path, tmp_path, 8080)
    assert "ssl" not in (tmp_path / "nginx" / "nginx.conf").read_text()


def test_log_and_compare_add_tinyhttp_variants(tmp_path: Path) -> None:
    tree = tmp_path / "old"
    tree.mkdir()
    compare = bench.compare_peer(tree, 1)
    assert compare.name == "tinyhttp@old"
    assert compare.cwd == tree.resolve()  # `python -m` looks in the current folder first
    assert compare.env == (("PYTHONPATH", str(tree.resolve())),)
    peers, skipped = bench.pick_peers(["tinyhttp"], log=True, compare=tree)
    assert [peer.name for peer in peers] == ["tinyhttp", "tinyhttp+log"]
    # No tinyhttp in that tree: the import would find this one, so the peer is skipped.
    assert len(skipped) == 1 and skipped[0].startswith("tinyhttp@old: import tinyhttp in")


def test_tls_commands_are_https() -> None:
    lines = bench.command_lines(bench.pick_loads(quick=True, tls=True), 5)
    assert "wrk -t1 -c50 -d5s https://127.0.0.1:PORT/1k.bin" in lines


# --- the floor probe, over a real socket ---------------------------------------------------


@pytest.fixture
def floor_probe(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """The floor probe on a free port, serving one 1 KB file; killed whatever happens."""
    body = os.urandom(1024)
    (tmp_path / "1k.bin").write_bytes(body)
    process = subprocess.Popen(
        [sys.executable, str(FLOOR_PROBE), str(tmp_path), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(TIMEOUT), "the floor probe printed nothing"
        line = process.stdout.readline().decode()  # printed whole, with its newline
        yield int(line.split(":")[2].split("/")[0]), body
    finally:
        process.kill()
        process.wait(TIMEOUT)
        process.stdout.close()


Fields = list[tuple[bytes, bytes]]


def _get(client: h11.Connection, sock: socket.socket, target: bytes) -> tuple[int, Fields, bytes]:
    """One GET on `sock` through an h11 client: the status, header fields and body."""
    request = h11.Request(method="GET", target=target, headers=[("Host", "127.0.0.1")])
    sock.sendall((client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b""))
    status, fields, body = 0, Fields(), b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status, fields = event.status_code, list(event.headers)
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            client.start_next_cycle()
            return status, fields, body
        else:
            pytest.fail(f"unexpected {event!r}")
    pytest.fail("no whole answer in time")


NINE = [
    b"date",
    b"server",
    b"x-content-type-options",
    b"content-type",
    b"content-length",
    b"last-modified",
    b"etag",
    b"accept-ranges",
    b"cache-control",
]


def test_floor_probe_answers_twice_on_one_connection(floor_probe: tuple[int, bytes]) -> None:
    port, body = floor_probe
    client = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        answers = [_get(client, sock, b"/1k.bin") for _ in range(2)]  # one connection, kept
    for status, fields, received in answers:
        assert status == 200
        assert [name for name, _ in fields] == NINE  # tinyhttp's nine, in its order
        values = dict(fields)
        assert values[b"content-length"] == b"1024"
        assert values[b"x-content-type-options"] == b"nosniff"
        assert values[b"cache-control"] == b"no-cache"
        assert values[b"etag"].startswith(b'"400-')
        assert received == body
