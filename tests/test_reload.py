"""Live reload's pure parts: the injected script, its ETag, the stream's frames, the watcher.

The watcher is driven in pretend time, as the server's loop drives it in real time: poll() at
every `next_poll`. Edits set their mtime with os.utime, so no test depends on sleeping or on
how finely the file system keeps time.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinyhttp import reload
from tinyhttp.reload import (
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    PATH,
    SCRIPT,
    Watcher,
    frame,
    inject,
    injected_etag,
    opening,
)

SCRIPT_BYTES = SCRIPT.encode("ascii")
_MTIMES = itertools.count(1_600_000_000 * 10**9, 10**9)  # a new, distinct mtime for each edit


# --- the injector --------------------------------------------------------------------------


def injected_at(page: bytes) -> int:
    """Where inject() put the script, checking that it added the script and nothing else."""
    result = inject(page)
    at = result.find(SCRIPT_BYTES)
    assert at >= 0 and len(result) == len(page) + len(SCRIPT_BYTES)
    assert result[:at] + result[at + len(SCRIPT_BYTES) :] == page
    return at


def test_script_goes_before_the_closing_body_tag() -> None:
    page = b"<!doctype html><head><title>t</title></head><body><p>hi</p></body></html>\n"
    assert injected_at(page) == page.index(b"</body>")


def test_the_closing_tag_is_found_in_any_case_and_with_spaces() -> None:
    for tag in (b"</BODY>", b"</Body>", b"</body >", b"</body\n>", b"</BoDy/>"):
        page = b"<html><body><p>x</p>" + tag + b"</html>"
        assert injected_at(page) == page.index(tag), tag


def test_the_last_closing_body_tag_wins() -> None:
    # An earlier one inside a script's string is not the end of the body.
    page = b'<body><script>document.write("</body>")</script><p>x</p></body></html>'
    assert injected_at(page) == page.rindex(b"</body>")


def test_without_a_body_the_script_goes_before_the_last_closing_head_tag() -> None:
    page = b"<html><head><title>x</title><!-- </head> --></HEAD><p>no body tags"
    assert injected_at(page) == page.index(b"</HEAD>")


def test_without_either_the_script_goes_at_the_end() -> None:
    page = b"<p>a fragment, no html, head or body tags</p>"
    assert injected_at(page) == len(page)
    assert injected_at(b"") == 0


def test_a_longer_tag_name_is_not_the_body() -> None:
    page = b"<head></head><bodyguard></bodyguard>"
    assert injected_at(page) == page.index(b"</head>")


def test_bytes_that_are_not_utf8_pass_through_unchanged() -> None:
    # Latin-1 and Shift_JIS bytes, and a lone continuation byte: not valid UTF-8.
    page = b"<html><body>caf\xe9 \x83e\x83X\x83g \x80\xff</body>\xfe</html>"
    with pytest.raises(UnicodeDecodeError):
        page.decode("utf-8")
    assert injected_at(page) == page.index(b"</body>")


def test_a_utf16_page_is_left_alone() -> None:
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        page = bom + "<html><body>x</body></html>".encode(codec)
        assert inject(page) == page


def test_the_script_is_one_small_inline_script_element() -> None:
    assert SCRIPT.isascii()
    assert len(SCRIPT_BYTES) < 2_500
    assert SCRIPT.startswith("<script>") and SCRIPT.rstrip().endswith("</script>")
    assert SCRIPT.count("</script") == 1 and "src=" not in SCRIPT
    assert "new EventSource(PATH)" in SCRIPT and f'var PATH = "{PATH}";' in SCRIPT
    for needed in ('"css"', '"reload"', "link[rel~=stylesheet]", "location.reload()"):
        assert needed in SCRIPT, needed
    assert "http://" not in SCRIPT and "https://" not in SCRIPT  # nothing from elsewhere


# --- the ETag ------------------------------------------------------------------------------


def test_the_injected_etag_is_derived_from_the_files_and_differs() -> None:
    tag = injected_etag('"abc-123"')
    assert tag != '"abc-123"'
    assert re.fullmatch(r'"abc-123-reload-[0-9a-f]{8}"', tag), tag
    assert injected_etag('"abc-123"') == tag  # the same file version, the same tag
    assert injected_etag('"abc-124"') != tag


def test_a_weak_etag_stays_weak() -> None:
    assert injected_etag('W/"x"').startswith('W/"x-reload-')


@pytest.mark.parametrize("bad", ["", '"', "abc", 'W/abc"', '"abc'])
def test_a_malformed_etag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        injected_etag(bad)


# --- the frames ----------------------------------------------------------------------------


def parse_stream(stream: bytes) -> tuple[list[tuple[str, str]], int | None]:
    """The events a browser dispatches for these bytes, and the last retry: the event stream
    interpretation of the WHATWG HTML standard (§9.2.6), cut down to the fields we use."""
    events: list[tuple[str, str]] = []
    retry: int | None = None
    name, data = "", []
    for line in re.split(r"\r\n|\r|\n", stream.decode("utf-8")):
        if line == "":
            if data:  # an event with an empty data buffer is dropped
                events.append((name or "message", "\n".join(data)))
            name, data = "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return events, retry


def test_a_frame_on_the_wire() -> None:
    assert frame("reload") == b"event: reload\ndata:\n\n"
    assert frame("css", "style.css") == b"event: css\ndata: style.css\n\n"


def test_every_frame_is_dispatched_as_the_event_it_names() -> None:
    stream = opening() + frame("css") + HEARTBEAT + frame("reload", "a.html")
    assert parse_stream(stream) == ([("css", ""), ("reload", "a.html")], reload.RETRY_MS)


def test_each_line_of_data_gets_its_own_data_field() -> None:
    assert frame("x", "one\ntwo\r\nthree\rfour") == (
        b"event: x\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    )
    assert parse_stream(frame("x", "a\n\nb")) == ([("x", "a\n\nb")], None)
    assert frame("x", "caf\u00e9") == "event: x\ndata: caf\u00e9\n\n".encode()


@pytest.mark.parametrize("bad", ["", "re\nload", "re\rload"])
def test_an_event_name_must_be_one_line(bad: str) -> None:
    with pytest.raises(ValueError):
        frame(bad)


def test_the_opening_sets_a_short_retry_and_dispatches_nothing() -> None:
    assert opening() == f"retry: {reload.RETRY_MS}\n\n".encode()
    assert parse_stream(opening()) == ([], reload.RETRY_MS)
    assert 0 < reload.RETRY_MS <= 2_000


def test_the_heartbeat_is_a_comment() -> None:
    assert HEARTBEAT.startswith(b":") and HEARTBEAT.endswith(b"\n\n")
    assert parse_stream(HEARTBEAT * 3) == ([], None)
    assert 15 <= HEARTBEAT_SECONDS <= 30


# --- the watcher ---------------------------------------------------------------------------


class Loop:
    """A Watcher driven as the server's loop drives it, in pretend time."""

    def __init__(self, root: Path) -> None:
        self.now = 1_000.0
        self.watcher = Watcher(str(root), self.now)

    def step(self) -> str | None:
        """One poll, at the moment the watcher asked for."""
        self.now = self.watcher.next_poll
        return self.watcher.poll(self.now)

    def run(self, seconds: float = 1.0) -> list[str]:
        """Every event from `seconds` of polling."""
        end, events = self.now + seconds, []
        while self.watcher.next_poll <= end:
            event = self.step()
            if event is not None:
                events.append(event)
        return events


def edit(path: Path, content: bytes | None = None) -> None:
    """Write the file (or leave its bytes as they are) and give it a new mtime."""
    if content is not None:
        path.write_bytes(content)
    mtime = next(_MTIMES)
    os.utime(path, ns=(mtime, mtime))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    for name in ("index.html", "style.css", "print.css", "app.js", "sub/page.html"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"version 1\n")
    (root / "sub" / "deeper").mkdir()
    (root / "sub" / "deeper" / "photo.png").write_bytes(b"\x89PNG")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (root / ".env").write_bytes(b"SECRET=1\n")
    for path in root.rglob("*"):
        edit(path)  # every file and folder starts with an old, distinct mtime
    return root


@pytest.fixture
def loop(site: Path) -> Loop:
    return Loop(site)


def test_nothing_changes_nothing_is_sent(loop: Loop) -> None:
    assert loop.run(seconds=30) == []


def test_polls_are_asked_for_a_tick_apart(loop: Loop) -> None:
    assert loop.watcher.next_poll == loop.now + reload.TICK
    early = loop.watcher.next_poll - 0.01
    assert loop.watcher.poll(early) is None
    assert loop.watcher.next_poll == early + 0.01  # a call before its time did nothing
    loop.step()
    assert loop.watcher.next_poll == pytest.approx(loop.now + reload.TICK)


def test_an_edited_page_is_one_reload(site: Path, loop: Loop) -> None:
    edit(site / "index.html", b"version 2\n")
    assert loop.run() == ["reload"]
    assert loop.run(seconds=10) == []


def test_an_edit_with_the_same_size_is_seen_by_its_mtime(site: Path, loop: Loop) -> None:
    edit(site / "sub" / "page.html", b"version 2\n")
    assert loop.run() == ["reload"]


def test_an_edited_stylesheet_is_css(site: Path, loop: Loop) -> None:
    edit(site / "style.css", b"body { color: red }\n")
    assert loop.run() == ["css"]


def test_two_stylesheets_are_css_a_stylesheet_and_a_script_are_reload(
    site: Path, loop: Loop
) -> None:
    edit(site / "style.css")
    edit(site / "print.css")
    assert loop.run() == ["css"]
    edit(site / "style.css")
    edit(site / "app.js")
    assert loop.run() == ["reload"]


def test_a_new_file_in_a_subfolder(site: Path, loop: Loop) -> None:
    (site / "sub" / "deeper" / "new.html").write_bytes(b"new\n")
    assert loop.run(seconds=3) == ["reload"]


def test_a_new_stylesheet_beside_the_others_is_css(site: Path, loop: Loop) -> None:
    (site / "dark.css").write_bytes(b"body { background: black }\n")
    assert loop.run(seconds=3) == ["css"]


def test_a_new_folder_full_of_files_is_one_reload(site: Path, loop: Loop) -> None:
    for index in range(40):
        path = site / "blog" / f"part{index % 4}" / f"post{index}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"post\n")
    assert loop.run(seconds=3) == ["reload"]


def test_a_deleted_page_is_reload_a_deleted_stylesheet_is_css(site: Path, loop: Loop) -> None:
    (site / "sub" / "page.html").unlink()
    assert loop.run(seconds=3) == ["reload"]
    (site / "print.css").unlink()
    assert loop.run(seconds=3) == ["css"]


def test_a_rename_is_one_reload(site: Path, loop: Loop) -> None:
    (site / "index.html").rename(site / "home.html")
    assert loop.run(seconds=3) == ["reload"]
    assert loop.run(seconds=10) == []


def test_an_atomic_save_is_seen_even_with_the_same_size_and_mtime(site: Path, loop: Loop) -> None:
    # An editor's "safe write": a new file renamed over the old one; only the inode differs.
    page = site / "index.html"
    old = page.stat()
    saved = site / ".index.html.saving"
    saved.write_bytes(b"version 2\n")
    os.utime(saved, ns=(old.st_atime_ns, old.st_mtime_ns))
    saved.replace(page)
    assert loop.run() == ["reload"]


def test_a_burst_of_writes_is_one_event_sent_once_it_is_quiet(site: Path, loop: Loop) -> None:
    loop.run(seconds=1)
    edit(site / "index.html", b"version 2\n")
    assert loop.step() is None  # found: not sent yet, more may follow
    for name in ("app.js", "sub/page.html", "style.css"):
        edit(site / name, b"version 2\n")
        assert loop.step() is None  # another write within QUIET: still not over
    changed_at = loop.now
    assert loop.step() == "reload"
    assert loop.now - changed_at == pytest.approx(reload.QUIET)
    assert loop.run(seconds=10) == []


def test_a_file_that_never_stops_changing_does_not_hold_events_back(site: Path, loop: Loop) -> None:
    events = []
    for _ in range(int(3 / reload.QUIET)):  # 3 s of a write at every poll
        edit(site / "app.js")
        event = loop.step()
        if event is not None:
            events.append(event)
    assert 2 <= len(events) <= 3 / reload.MAX_WAIT + 1


def test_dotfiles_git_and_editor_temporaries_are_ignored(site: Path, loop: Loop) -> None:
    edit(site / ".git" / "HEAD", b"ref: refs/heads/other\n")
    (site / ".git" / "objects" / "ab").mkdir()
    (site / ".git" / "objects" / "ab" / "cdef").write_bytes(b"blob")
    edit(site / ".env", b"SECRET=2\n")
    (site / ".cache" / "deep").mkdir(parents=True)
    (site / ".cache" / "deep" / "x.html").write_bytes(b"x")
    for name in ("index.html~", "#index.html#", ".index.html.swp", "upload.tmp", "4913"):
        (site / "sub" / name).write_bytes(b"editor's scratch")
    assert loop.run(seconds=60) == []
    for name in ("index.html~", "#index.html#", ".index.html.swp", "upload.tmp", "4913"):
        (site / "sub" / name).unlink()
    shutil.rmtree(site / ".git")
    assert loop.run(seconds=60) == []


def test_a_folder_deleted_mid_watch(site: Path, loop: Loop) -> None:
    shutil.rmtree(site / "sub")
    assert loop.run(seconds=3) == ["reload"]
    assert loop.run(seconds=10) == []
    edit(site / "index.html", b"still watching\n")
    assert loop.run() == ["reload"]


def test_a_folder_that_vanishes_while_it_is_being_listed(
    site: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = site / "sub"
    (sub / "another.html").write_bytes(b"new\n")  # its folder changed: it will be listed
    real_scandir = os.scandir

    def vanishing(path: str) -> Any:
        if path == str(sub):
            shutil.rmtree(sub)  # gone after the stat() that said it changed
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", vanishing)
    assert loop.run(seconds=3) == ["reload"]
    monkeypatch.undo()
    sub.mkdir()
    (sub / "back.html").write_bytes(b"back\n")
    assert loop.run(seconds=3) == ["reload"]


def test_files_that_vanish_between_the_listing_and_their_stat(
    site: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = site / "sub"
    (sub / "another.html").write_bytes(b"new\n")
    real_scandir = os.scandir

    def listed_then_emptied(path: str) -> Any:
        with real_scandir(path) as entries:
            listed = list(entries)
        if path == str(sub):
            for entry in listed:
                if entry.is_file():
                    os.unlink(entry.path)  # the entry is in hand, its file is not
        return _Listing(listed)

    monkeypatch.setattr(os, "scandir", listed_then_emptied)
    assert "reload" in loop.run(seconds=3)
    monkeypatch.undo()
    assert loop.run(seconds=10) in ([], ["reload"])  # the listing catches up, then calm
    assert loop.run(seconds=10) == []


class _Listing:
    """What os.scandir() returns, from a list: iterable, and a context manager."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self._entries = entries

    def __iter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self._entries)

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def refuse_to_list(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """From now on, listing `folder` fails as it does without read permission (which
    root, as CI runs, always has, so chmod cannot show it)."""
    real_scandir = os.scandir

    def refusing(path: str) -> Any:
        if path == str(folder):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)


def test_a_folder_that_cannot_be_read(
    site: Path, loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = site / "sub"
    refuse_to_list(monkeypatch, sub)
    edit(sub)  # its mtime moves, so it is listed again, and refused
    assert loop.run(seconds=3) == ["reload"]  # what cannot be read cannot be served: gone
    monkeypatch.undo()
    edit(sub)
    assert loop.run(seconds=3) == ["reload"]  # readable again: back
    edit(sub / "page.html", b"version 2\n")
    assert loop.run() == ["reload"]


def test_a_folder_unreadable_from_the_start(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_to_list(monkeypatch, site / "sub")
    loop = Loop(site)
    assert loop.run(seconds=5) == []
    edit(site / "index.html", b"version 2\n")
    assert loop.run() == ["reload"]


def test_the_served_folder_itself_deleted_and_made_again(site: Path, loop: Loop) -> None:
    shutil.rmtree(site)
    assert loop.run(seconds=3) == ["reload"]
    assert loop.run(seconds=5) == []
    site.mkdir()
    (site / "index.html").write_bytes(b"new site\n")
    assert loop.run(seconds=3) == ["reload"]
    edit(site / "index.html", b"edited\n")
    assert loop.run() == ["reload"]


def test_a_file_replaced_by_a_folder(site: Path, loop: Loop) -> None:
    (site / "app.js").unlink()
    (site / "app.js").mkdir()
    (site / "app.js" / "index.js").write_bytes(b"x")
    assert loop.run(seconds=3) == ["reload"]
    edit(site / "app.js" / "index.js", b"y")
    assert loop.run(seconds=3) == ["reload"]


def test_a_link_back_up_the_tree_is_not_followed(site: Path) -> None:
    (site / "sub" / "loop").symlink_to(site, target_is_directory=True)
    loop = Loop(site)  # would never finish listing if it followed the link
    assert loop.run(seconds=5) == []
    edit(site / "sub" / "page.html", b"version 2\n")
    assert loop.run(seconds=3) == ["reload"]


# --- the watcher on a bigger tree: bounded work, and what is looked at first ---------------


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """400 files (200 of them web files) in 20 folders: more than one poll's share."""
    root = tmp_path / "big"
    for folder in range(20):
        for index in range(20):
            suffix = ".html" if index % 2 else ".png"
            path = root / f"section{folder:02}" / f"file{index:02}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            edit(path)
    return root


def test_each_poll_does_a_bounded_amount_of_work(
    big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = Loop(big)
    real_stat, calls = os.stat, [0]

    def counting(*args: Any, **kwargs: Any) -> os.stat_result:
        calls[0] += 1
        return real_stat(*args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    most = reload.HOT + reload.WEB_SLICE + reload.OTHER_SLICE + reload.FOLDER_SLICE
    for _ in range(100):
        calls[0] = 0
        loop.step()
        assert 0 < calls[0] <= most


def test_a_cold_edit_is_found_within_one_sweep(big: Path) -> None:
    loop = Loop(big)
    loop.run(seconds=1)
    edit(big / "section13" / "file02.png", b"yy")  # not a web file, not recent: the slowest
    sweep = 200 / reload.OTHER_SLICE * reload.TICK
    assert loop.run(seconds=sweep + 1) == ["reload"]


def test_a_file_a_browser_loaded_is_looked_at_on_every_poll(big: Path) -> None:
    loop = Loop(big)
    for folder in range(20):  # a different file each time, so none is hot from its last edit
        page = big / f"section{folder:02}" / "file07.html"
        loop.watcher.served(str(page))
        loop.run(seconds=0.5)
        edit(page, b"edited")
        assert loop.run(seconds=reload.TICK + reload.QUIET) == ["reload"], page


def test_a_file_edited_once_is_looked_at_on_every_poll(big: Path) -> None:
    loop = Loop(big)
    page = big / "section05" / "file09.html"
    for number, content in enumerate((b"first", b"second", b"third!", b"fourth")):
        page.write_bytes(content)
        os.utime(page, ns=(number, number))  # older than every other file: never "newest"
        seconds = 20 if number == 0 else reload.TICK + reload.QUIET
        assert loop.run(seconds) == ["reload"], content


def test_a_loaded_file_deleted_is_one_event(big: Path) -> None:
    # Its stat() fails on the next poll; its folder is listed at once, not when the folder
    # sweep gets there, which would be a second event.
    loop = Loop(big)
    for folder in range(0, 20, 3):
        page = big / f"section{folder:02}" / "file05.html"
        loop.watcher.served(str(page))
        loop.run(seconds=0.5)
        page.unlink()
        assert loop.run(seconds=reload.TICK + reload.QUIET) == ["reload"], page
        assert loop.run(seconds=5) == [], page


def test_a_folder_vanishing_while_listed_in_a_big_tree_is_one_event(
    big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = big / "section11" / "inner"  # late in the folder sweep, and so is its parent
    sub.mkdir()
    (sub / "old.html").write_bytes(b"old")
    loop = Loop(big)
    loop.run(seconds=3)
    (sub / "new.html").write_bytes(b"new")
    real_scandir = os.scandir

    def vanishing(path: str) -> Any:
        if path == str(sub):
            shutil.rmtree(sub)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", vanishing)
    assert loop.run(seconds=3) == ["reload"]
    assert loop.run(seconds=5) == []  # its parent was listed at once, not a sweep later


def test_served_ignores_what_it_does_not_watch(big: Path) -> None:
    loop = Loop(big)
    for path in ("/elsewhere/x.html", str(big / "missing.html"), str(big / "section01")):
        loop.watcher.served(path)  # no error, and nothing to report
    assert loop.run(seconds=5) == []
