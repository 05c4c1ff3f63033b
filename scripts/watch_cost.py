"""What --reload's file watcher costs while idle, and how soon it notices an edit.

    python scripts/watch_cost.py [--files N] [--idle SECONDS] [--samples N] [--seed N]
    python scripts/watch_cost.py --quick

Builds a site of N files (5,000 by default) in a temporary folder: folders of 20 files, two
.html, a .css, a .js and an .svg among them, the rest images, fonts and text, with mtimes
spread over the last 90 days, and a .git folder the watcher must skip. Then it drives
tinyhttp.reload.Watcher exactly as the server's loop does, in this one thread: sleep until
`next_poll`, call `poll(time.monotonic())`, again and again.

1. Idle: after 2 s of warming up, polls for SECONDS (10 by default) with nothing changing,
   and reports the CPU time that cost (time.process_time, user + system, the wake-ups
   included) per second, as a share of one core. The budget is 1 %.
2. Latency: edits a file at a random moment while polling and reports the time from the
   write to the poll() that returned the event, over several edits of each kind:
   - the .html and the .css of the page a tab shows (the server has called served() for
     the files it sent the tab), written in place, as most editors save;
   - an .html no tab loaded and nobody touched for weeks, written in place (the worst case:
     only the slow sweep over every file finds it);
   - such an .html saved by writing a temporary file and renaming it over the old one, as
     vim and "atomic save" editors do (its folder's mtime changes).
   A browser adds its own reload or stylesheet swap on top of these figures.

Everything lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyhttp import reload

__all__ = ["Sample", "build_site", "idle_cost", "latencies", "main"]

FILES_PER_FOLDER = 20
WEB = ["a.html", "b.html", "style.css", "app.js", "icon.svg"]
OTHER = [f"img{i}.png" for i in range(10)] + ["font.woff2", "notes.md", "data.txt"]
OTHER += ["photo.jpg", "clip.webp"]
GIT_OBJECTS = 1_000
DAY = 86_400.0
TIMEOUT = 30.0  # seconds one edit may take to be noticed before the script gives up


@dataclass
class Sample:
    """One edit: what was written, and the event poll() returned for it how much later."""

    path: str
    event: str | None
    seconds: float


def build_site(root: Path, files: int, rng: random.Random) -> list[Path]:
    """`files` files in folders of 20 (top/sub/name), plus a .git folder; the folders."""
    folders: list[Path] = []
    now = time.time()
    for index in range(max(1, files // FILES_PER_FOLDER)):
        folder = root / f"part{index // 25:02}" / f"section{index:03}"
        folder.mkdir(parents=True)
        folders.append(folder)
        for name in (WEB + OTHER)[:FILES_PER_FOLDER]:
            path = folder / name
            path.write_bytes(b"x" * rng.randrange(100, 4_000))
            old = now - rng.uniform(1, 90) * DAY
            os.utime(path, (old, old))
    git = root / ".git" / "objects"
    git.mkdir(parents=True)
    for index in range(GIT_OBJECTS):
        (git / f"{index:05x}").write_bytes(b"blob")
    return folders


def _sleep_until(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)


def idle_cost(watcher: reload.Watcher, seconds: float) -> tuple[float, int]:
    """CPU seconds per second of polling with nothing changing, and how many polls ran."""
    polls = 0
    cpu_start, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < seconds:
        _sleep_until(watcher.next_poll)
        if watcher.poll(time.monotonic()) is not None:
            raise RuntimeError("an event while nothing changed")
        polls += 1
    return (time.process_time() - cpu_start) / (time.monotonic() - start), polls


def _poll_for(watcher: reload.Watcher, seconds: float) -> None:
    """Keep polling for a while, so the last edit's batch is out and the phase is random."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _sleep_until(min(watcher.next_poll, end))
        watcher.poll(time.monotonic())


def _one_edit(watcher: reload.Watcher, edit: Callable[[], None], path: str) -> Sample:
    """Make the edit at the next moment the loop would be asleep; time until the event."""
    _sleep_until(watcher.next_poll - random.uniform(0, reload.TICK))
    edit()
    written = time.monotonic()
    while time.monotonic() - written < TIMEOUT:
        _sleep_until(watcher.next_poll)
        event = watcher.poll(time.monotonic())
        if event is not None:
            return Sample(path, event, time.monotonic() - written)
    return Sample(path, None, TIMEOUT)


def _write_in_place(path: Path, rng: random.Random) -> Callable[[], None]:
    def save() -> None:
        path.write_bytes(b"y" * rng.randrange(100, 4_000))  # truncate, then write: one inode

    return save


def _write_and_rename(path: Path, rng: random.Random) -> Callable[[], None]:
    def save() -> None:
        temporary = path.with_name(f".{path.name}.saving")  # a dotfile: not watched
        temporary.write_bytes(b"z" * rng.randrange(100, 4_000))
        os.replace(temporary, path)

    return save


def latencies(
    watcher: reload.Watcher, targets: list[Path], how: Callable[[Path], Callable[[], None]]
) -> list[Sample]:
    """Edit each target once, a random 0.3-1 s after the previous batch went out."""
    samples = []
    for path in targets:
        _poll_for(watcher, random.uniform(0.3, 1.0))
        samples.append(_one_edit(watcher, how(path), str(path)))
    return samples


def _report(title: str, samples: list[Sample]) -> None:
    milliseconds = sorted(sample.seconds * 1000 for sample in samples)
    events = sorted({str(sample.event) for sample in samples})
    deciles = statistics.quantiles(milliseconds, n=10) if len(milliseconds) > 1 else milliseconds
    print(
        f"  {title:<34} n={len(samples):<3} events={','.join(events):<7} "
        f"min {milliseconds[0]:6.0f}  median {statistics.median(milliseconds):6.0f}  "
        f"p90 {deciles[-1]:6.0f}  max {milliseconds[-1]:6.0f} ms"
    )


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5_000, help="files in the site")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle polling")
    parser.add_argument("--samples", type=int, default=15, help="edits of each hot kind")
    parser.add_argument("--seed", type=int, default=1, help="for the tree and the timing")
    parser.add_argument("--quick", action="store_true", help="2 s idle, 5 edits of each kind")
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.idle, arguments.samples = 2.0, 5
    return arguments


def _describe(files: int, folders: int, seconds: float) -> None:
    web = files * len(WEB) // FILES_PER_FOLDER
    sweeps = {
        "web files": web / reload.WEB_SLICE,
        "other files": (files - web) / reload.OTHER_SLICE,
        "folders": folders / reload.FOLDER_SLICE,
    }
    print(f"site: {files} files ({web} web) in {folders} folders (+{GIT_OBJECTS} under .git)")
    print(f"first listing of the tree: {seconds * 1000:.0f} ms of CPU")
    print(
        f"every poll ({reload.TICK * 1000:.0f} ms): {reload.HOT} hot files, then "
        f"{reload.WEB_SLICE} web files, {reload.OTHER_SLICE} others, {reload.FOLDER_SLICE} folders"
    )
    each = ", ".join(f"{kind} every {n * reload.TICK:.1f} s" for kind, n in sweeps.items())
    print(f"so, hot files aside, the sweeps look at {each}")


def _run(root: Path, arguments: argparse.Namespace) -> None:
    rng = random.Random(arguments.seed)
    random.seed(arguments.seed)
    folders = build_site(root, arguments.files, rng)
    started = time.process_time()
    watcher = reload.Watcher(str(root), time.monotonic())
    watched = sum(1 for p in root.rglob("*") if p.is_dir() and ".git" not in p.parts) + 1
    _describe(arguments.files, watched, time.process_time() - started)

    _poll_for(watcher, 2.0)  # past the first listing's after-effects (cold caches, writeback)
    cpu, polls = idle_cost(watcher, arguments.idle)
    print(
        f"idle, {arguments.idle:.0f} s: {polls / arguments.idle:.1f} polls/s, "
        f"{cpu * 1000:.2f} ms of CPU per second = {cpu * 100:.2f} % of one core"
    )

    page = rng.choice(folders)  # the page a tab shows: the server sent it these files
    for name in WEB:
        watcher.served(str(page / name))
    cold = [folder / "a.html" for folder in rng.sample(folders, 2 * max(1, arguments.samples))]
    cold_in_place, cold_renamed = cold[: len(cold) // 2], cold[len(cold) // 2 :]
    print("from a write to poll() returning its event:")
    n = arguments.samples
    _report("served .html, in place", latencies(watcher, [page / "a.html"] * n, _writer(rng)))
    _report("served .css, in place", latencies(watcher, [page / "style.css"] * n, _writer(rng)))
    cold_n = max(1, n // 3)  # each takes seconds
    _report("cold .html, in place", latencies(watcher, cold_in_place[:cold_n], _writer(rng)))
    _report("cold .html, write + rename", latencies(watcher, cold_renamed, _renamer(rng)))


def _writer(rng: random.Random) -> Callable[[Path], Callable[[], None]]:
    return lambda path: _write_in_place(path, rng)


def _renamer(rng: random.Random) -> Callable[[Path], Callable[[], None]]:
    return lambda path: _write_and_rename(path, rng)


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    with tempfile.TemporaryDirectory(prefix="watch-cost-") as folder:
        _run(Path(folder), arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
