"""Live reload's pure parts: the script a page gets, the stream's frames, a polling watcher."""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable

from . import conditional
from .message import FileSlice, Reply, Request, Stream
from .mime import content_type

__all__ = [
    "HEARTBEAT",
    "HEARTBEAT_SECONDS",
    "PATH",
    "RETRY_MS",
    "SCRIPT",
    "Watcher",
    "frame",
    "inject",
    "injected_etag",
    "opening",
    "page_reply",
    "plain",
    "served_path",
    "stream_reply",
    "wants_plain",
]

# Under /.well-known/ (RFC 8615), like the echo, so no site file is likely to be hidden by it.
PATH = "/.well-known/tinyhttp/reload"

# --- the script every HTML page gets -------------------------------------------------------
#
# One EventSource per browser, not per tab: over HTTP/1.1 a browser opens at most six
# connections to one host, and each open stream holds one for good, so six tabs would leave
# no connection for loading anything. The tab holding a Web Lock listens and tells the
# others over a BroadcastChannel; when it closes, the lock passes to another tab. Both need
# a secure context (127.0.0.1 and localhost are one); elsewhere every tab listens itself.
#
# A stylesheet is swapped, not edited: a copy of the <link> with a fresh query loads beside
# the old one, and the old one goes once the copy has loaded (or failed, as a reload would
# show), so the page never renders unstyled. Other sites' stylesheets are left alone.
#
# A second `open` means the stream was lost and found again: the server restarted, and
# anything may have changed meanwhile, so the page reloads once.
#
# Every tab reloads at once, and a page lives on until its successor arrives: a page that
# is already on its way out hands the lock straight on, or it would open a stream only to
# drop it a moment later.
_SCRIPT_TEMPLATE = """<script>
(function () {
  "use strict";
  var PATH = __PATH__;
  var channel = window.BroadcastChannel ? new BroadcastChannel("tinyhttp-reload") : null;
  var leaving = false;

  function fresh(href, stamp) {
    var url = new URL(href);
    var kept = url.search.slice(1).split("&").filter(function (part) {
      return part !== "" && part.indexOf("tinyhttp-reload=") !== 0;
    });
    kept.push("tinyhttp-reload=" + stamp);
    url.search = kept.join("&");
    return url.href;
  }

  function swapStylesheets() {
    var stamp = Date.now();
    document.querySelectorAll("link[rel~=stylesheet]").forEach(function (old) {
      if (old.tinyhttpSwapped || old.href.indexOf(location.origin + "/") !== 0) {
        return;
      }
      var copy = old.cloneNode(false);
      copy.href = fresh(old.href, stamp);
      copy.onload = copy.onerror = function () { old.remove(); };
      old.tinyhttpSwapped = true;
      old.after(copy);
    });
  }

  function act(name) {
    if (name === "css") { swapStylesheets(); } else { leaving = true; location.reload(); }
  }

  function listen(heard) {
    var source = new EventSource(PATH);
    var opened = false;
    source.onopen = function () {
      if (opened) { heard("reload"); }
      opened = true;
    };
    source.addEventListener("css", function () { heard("css"); });
    source.addEventListener("reload", function () { heard("reload"); });
  }

  if (channel && navigator.locks) {
    channel.onmessage = function (message) { act(message.data); };
    navigator.locks.request("tinyhttp-reload", function () {
      if (leaving) { return; }
      listen(function (name) { channel.postMessage(name); act(name); });
      return new Promise(function () {});
    });
  } else {
    listen(act);
  }
})();
</script>
"""
SCRIPT = _SCRIPT_TEMPLATE.replace("__PATH__", json.dumps(PATH))
_SCRIPT_BYTES = SCRIPT.encode("ascii")  # ASCII is the same bytes in every encoding a page may use

# The last closing tag: `.*` is greedy, so the match backs off from the end to the last one.
# A tag name ends at whitespace, "/" or ">" (WHATWG HTML §13.2.5.10), so </bodyx> is not one.
_LAST_BODY_END = re.compile(rb".*(</body[\t\n\f\r />])", re.DOTALL | re.IGNORECASE)
_LAST_HEAD_END = re.compile(rb".*(</head[\t\n\f\r />])", re.DOTALL | re.IGNORECASE)
# A UTF-16 byte order mark decides the encoding (WHATWG Encoding §6, "BOM sniff"): ASCII
# bytes inserted into such a page would be garbage, so it is left as it is.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def inject(page: bytes) -> bytes:
    """The page with SCRIPT before its last </body>, else its last </head>, else at the end.

    Works on bytes: the page's encoding is unknown, but the markers and the script are
    ASCII, which every encoding a browser sniffs for HTML (other than UTF-16) shares.
    """
    if page.startswith(_UTF16_BOMS):
        return page
    found = _LAST_BODY_END.match(page) or _LAST_HEAD_END.match(page)
    at = found.start(1) if found else len(page)
    return page[:at] + _SCRIPT_BYTES + page[at:]


# The injected page is another representation of the file, so it needs its own strong tag
# (RFC 9110 §8.8.1); the script's digest is part of it, so a tinyhttp with a different
# script never answers 304 for a page cached with the old one.
_ETAG_SUFFIX = "-reload-" + hashlib.sha256(_SCRIPT_BYTES).hexdigest()[:8]


def injected_etag(etag: str) -> str:
    """The injected page's entity-tag: `"abc-123"` -> `"abc-123-reload-<8 hex>"`.

    Never equal to the file's own tag, so a 304 can never hand a browser the bare file
    for the injected page or the other way round. A weak tag (`W/"..."`) stays weak.
    """
    if not (etag.endswith('"') and etag.removeprefix("W/").startswith('"') and len(etag) > 1):
        raise ValueError(f"not an entity-tag: {etag!r}")
    return etag[:-1] + _ETAG_SUFFIX + '"'


# --- the stream's frames (WHATWG HTML §9.2, Server-sent events) ----------------------------

# How long a browser waits before reconnecting after the stream ends (its default is a few
# seconds): short, so a restarted server is back in the tab quickly.
RETRY_MS = 500
# A comment line, ignored by the browser: it keeps the connection from looking idle to
# proxies and to our own idle timeout; the spec suggests one "every 15 seconds or so".
HEARTBEAT = b": keep-alive\n\n"
HEARTBEAT_SECONDS = 15.0
# The stream's line ends: CRLF, LF or CR, and nothing else (not the Unicode ones).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def opening() -> bytes:
    """The first bytes of a stream: just the reconnection delay, no event."""
    return f"retry: {RETRY_MS}\n\n".encode("ascii")


def frame(event: str, data: str = "") -> bytes:
    """One event, UTF-8 (the only encoding an event stream has), ended by an empty line.

    Every event carries a data line, even an empty one: a browser drops an event whose
    data buffer is empty without dispatching it. Each line of `data` gets its own `data:`.
    """
    if not event or _LINE_BREAK.search(event):
        raise ValueError(f"an event name is one non-empty line: {event!r}")
    lines = [f"event: {event}"]
    lines += [f"data: {line}" if line else "data:" for line in _LINE_BREAK.split(data)]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


# --- the server's side: the stream's answer, and HTML pages with the script in -------------


def stream_reply() -> Reply:
    """The answer at PATH: an event stream that stays open (never stored by a cache)."""
    headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")]
    return Reply(200, headers, Stream(opening()))


def _html(reply: Reply) -> bool:
    return dict(reply.headers).get("Content-Type", "").startswith("text/html")


def wants_plain(reply: Reply, path: str) -> bool:
    """Whether an answer for a page must be made again from the plain file: a range of it
    or a compressed sibling has no place to put the script, and a 304 means the client
    holds the plain file, not the page with the script in."""
    if reply.status == 304:
        return path.endswith("/") or content_type(path).startswith("text/html")
    coded = any(name == "Content-Encoding" for name, _ in reply.headers)
    return _html(reply) and (reply.status in (206, 416) or coded)


def page_reply(request: Request, reply: Reply) -> Reply:
    """An HTML answer (a page, a listing, a 404) with the script in, as a representation of
    its own: exact Content-Length, its own ETag, and no ranges (RFC 9110 §14.2 lets a server
    ignore Range, so a Range on it gets the whole page)."""
    if reply.status not in (200, 404) or not _html(reply) or isinstance(reply.body, Stream):
        return reply
    page = inject(_bytes_of(reply))
    dropped = ("Content-Length", "ETag", "Accept-Ranges")
    headers = [(name, value) for name, value in reply.headers if name not in dropped]
    headers.append(("Content-Length", str(len(page))))
    etag = dict(reply.headers).get("ETag")
    if etag is None:
        return Reply(reply.status, headers, page)
    tag = injected_etag(etag)
    headers.append(("ETag", tag))
    if _unchanged(request, tag):
        kept = ("ETag", "Last-Modified", "Cache-Control", "Vary")
        return Reply(304, [(name, value) for name, value in headers if name in kept])
    return Reply(reply.status, headers, page)


def plain(request: Request) -> Request:
    """The request without what would make a page's answer a range or a compressed copy."""
    dropped = ("range", "if-range", "accept-encoding", "if-none-match", "if-modified-since")
    headers = {name: value for name, value in request.headers.items() if name not in dropped}
    return dataclasses.replace(request, headers=headers)


def served_path(root: str, url_path: str, index: str) -> str:
    """The file a URL path names under `root`, a folder's `index` file for a folder."""
    return os.path.join(root, url_path.lstrip("/"), index if url_path.endswith("/") else "")


def _unchanged(request: Request, tag: str) -> bool:
    """If-None-Match names the injected page (RFC 9110 §13.1.2: weak comparison)."""
    wanted = request.headers.get("if-none-match")
    if wanted is None or request.method not in ("GET", "HEAD"):
        return False
    return conditional.list_matches(wanted, tag, conditional.weak_match)


def _bytes_of(reply: Reply) -> bytes:
    """The whole body as bytes; a file slice is read, and its file closed."""
    parts = []
    for piece in reply.pieces:
        if isinstance(piece, FileSlice):
            os.lseek(piece.fd, piece.offset, os.SEEK_SET)  # portable, unlike os.pread
            parts.append(os.read(piece.fd, piece.length))
        else:
            parts.append(piece)
    reply.close()
    return b"".join(parts)


# --- the watcher ---------------------------------------------------------------------------
#
# Polling costs one stat() per file looked at, a few microseconds each, and every wake-up of
# the loop costs some tens more, so what is looked at how often is the whole design. On every
# poll: the HOT files, those likeliest to be edited next (the ones browsers loaded, the ones
# edited lately, the newest web files). Then a slice of each ring, round and round: the web's
# own files, the other files (more slowly), and the folders, whose mtime changes when an
# entry is created, deleted or renamed in them (an editor's "atomic save" is a rename); a
# changed folder is listed again. The figures below are for scripts/watch_cost.py's site of
# 5,000 files (1,250 of them web files) in 261 folders.
TICK = 0.1  # seconds between polls while nothing happens
QUIET = 0.05  # a batch goes out once a poll this long after the last change finds no more
MAX_WAIT = 1.0  # ...or once it is this old, so a file that never stops changing holds no one up
SCAN_GAP = 0.01  # seconds between polls while folders wait to be listed (a copied-in tree)
HOT = 12  # files looked at on every poll
WEB_SLICE = 12  # web files per poll: 1,250 are all looked at every ~10 s
OTHER_SLICE = 8  # other files per poll: 3,750 every ~47 s (replacing one by rename is seen sooner)
FOLDER_SLICE = 12  # folders per poll: 261 every ~2.2 s
SCANS_PER_POLL = 8  # folders listed per poll at most
# The web's own files: what a tab shows is made of these, so they are the ones kept hot.
WEB_SUFFIXES = (".html", ".htm", ".css", ".js", ".mjs", ".json", ".svg")

Stamp = tuple[int, int, int]  # mtime_ns, size, inode: an edit or a replacement changes one
MISSING: Stamp = (-1, -1, -1)  # could not stat(): gone, or not ours to read


class _Ring:
    """Hands out every key of a collection a slice at a time, round after round; keys
    added during a round wait for the next one."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._at = 0
        self.new_round = False

    def take(self, count: int, keys: Iterable[str]) -> list[str]:
        self.new_round = self._at >= len(self._keys)
        if self.new_round:
            self._keys, self._at = list(keys), 0
        chunk = self._keys[self._at : self._at + count]
        self._at += count
        return chunk


class Watcher:
    """Notices files created, changed and deleted under `root`, polled from the server's loop.

    Call `poll(now)` when `now >= next_poll` (monotonic seconds); it does a bounded amount of
    work and returns "css", "reload" or None. `served(path)` says a browser loaded a file,
    which keeps it among the files looked at on every poll.
    """

    def __init__(self, root: str, now: float) -> None:
        self.root = os.path.abspath(root)
        self.next_poll = now + TICK
        self._web: dict[str, Stamp] = {}  # the web's own files, and their stamps
        self._other: dict[str, Stamp] = {}  # every other file
        self._dirs: dict[str, Stamp] = {self.root: _stamp(self.root)}
        self._children: dict[str, set[str]] = {}  # folder -> the entries it listed last
        self._to_scan: dict[str, None] = {}  # folders to list, in order, each once
        self._web_ring, self._other_ring, self._dir_ring = _Ring(), _Ring(), _Ring()
        self._recent: OrderedDict[str, None] = OrderedDict()  # served or changed, newest last
        self._fill: list[str] = []
        self._hot: list[str] = []
        self._batch: set[str] = set()
        self._found = False
        self._first_change = self._last_change = now
        self._watching = False
        self._inventory()

    def _inventory(self) -> None:
        """List the whole tree once: what it finds is the starting point, not news."""
        self._to_scan[self.root] = None
        while self._to_scan:
            self._scan_queued(len(self._to_scan))
        self._refill_hot()
        self._watching = True

    # --- what the loop calls ---------------------------------------------------------------

    def poll(self, now: float) -> str | None:
        """Look at the next slice of the tree; the event for a batch of changes that is over."""
        if now < self.next_poll:
            return None
        was_empty, self._found = not self._batch, False
        self._look()
        self._scan_queued(SCANS_PER_POLL)
        if self._found:
            self._last_change = now
            self._first_change = now if was_empty else self._first_change
        event = self._take_batch(now)
        self._schedule(now)
        return event

    def served(self, path: str) -> None:
        """A browser loaded this file: look at it on every poll while it stays recent."""
        path = os.path.abspath(path)
        if self._web.get(path, MISSING) != MISSING:
            self._promote(path)

    def _table(self, path: str) -> dict[str, Stamp]:
        return self._web if _is_web(path) else self._other

    # --- looking ---------------------------------------------------------------------------

    def _look(self) -> None:
        """This poll's share of stat() calls: the hot files, then a slice of each ring."""
        for path in self._hot:
            self._check_file(path, self._table(path))
        for path in self._web_ring.take(WEB_SLICE, self._web):
            self._check_file(path, self._web)
        if self._web_ring.new_round:
            self._refill_hot()
        for path in self._other_ring.take(OTHER_SLICE, self._other):
            self._check_file(path, self._other)
        for folder in self._dir_ring.take(FOLDER_SLICE, self._dirs):
            self._check_folder(folder)

    def _check_file(self, path: str, table: dict[str, Stamp]) -> None:
        known = table.get(path)
        if known is None:
            return  # forgotten since it was handed out
        stamp = _stamp(path)
        if stamp != known:
            table[path] = stamp
            self._changed(path)
            if stamp == MISSING:
                self._queue(os.path.dirname(path))  # its folder's listing says if it is gone

    def _check_folder(self, folder: str) -> None:
        known = self._dirs.get(folder)
        if known is None:
            return
        stamp = _stamp(folder)
        if stamp != known:
            self._dirs[folder] = stamp  # before listing, so a change during it shows next time
            self._queue(folder)
            if stamp == MISSING:
                self._queue(os.path.dirname(folder))

    def _queue(self, folder: str) -> None:
        if folder in self._dirs:
            self._to_scan[folder] = None

    def _scan_queued(self, limit: int) -> None:
        for _ in range(min(limit, len(self._to_scan))):
            folder = next(iter(self._to_scan))
            del self._to_scan[folder]
            if folder in self._dirs:  # not forgotten while it waited
                self._scan(folder)

    def _scan(self, folder: str) -> None:
        """List one folder and note what was created, replaced or deleted since last time."""
        listed = _list(folder)
        if listed is None:  # it vanished: its parent's listing will say so too
            listed = {}
            self._queue(os.path.dirname(folder))
        for path in self._children.get(folder, set()) - listed.keys():
            self._forget(path)
        for path, (is_dir, stamp) in listed.items():
            self._note(path, is_dir, stamp)
        self._children[folder] = set(listed)

    def _note(self, path: str, is_dir: bool, stamp: Stamp) -> None:
        if is_dir:
            if path not in self._dirs:
                self._forget(path)  # a file of that name, if there was one
                self._dirs[path] = stamp
                self._queue(path)
                self._changed(path)
            return  # a known folder's own changes are the folder ring's business
        if path in self._dirs:
            self._forget(path)  # a folder replaced by a file
        table = self._table(path)
        if table.get(path) != stamp:
            table[path] = stamp
            self._changed(path)

    def _forget(self, path: str) -> None:
        """Drop a file, or a folder and everything under it; each is a change."""
        known = self._table(path).pop(path, None) is not None
        known = self._dirs.pop(path, None) is not None or known
        for child in self._children.pop(path, set()):
            self._forget(child)
        if known:
            self._changed(path)

    # --- batches and the hot list ----------------------------------------------------------

    def _changed(self, path: str) -> None:
        if not self._watching:
            return
        self._batch.add(path)
        self._found = True
        if self._table(path).get(path, MISSING) != MISSING:
            self._promote(path)  # edited once, likely edited again

    def _take_batch(self, now: float) -> str | None:
        if not self._batch:
            return None
        quiet = now >= self._last_change + QUIET and not self._to_scan
        if not quiet and now < self._first_change + MAX_WAIT:
            return None
        css = all(path.lower().endswith(".css") for path in self._batch)
        self._batch.clear()
        return "css" if css else "reload"

    def _schedule(self, now: float) -> None:
        if self._to_scan:
            self.next_poll = now + SCAN_GAP
        elif self._batch:
            self.next_poll = min(now + TICK, self._last_change + QUIET)
        else:
            self.next_poll = now + TICK

    def _promote(self, path: str) -> None:
        self._recent[path] = None
        self._recent.move_to_end(path)
        if len(self._recent) > HOT:
            self._recent.popitem(last=False)
        self._rebuild_hot()

    def _refill_hot(self) -> None:
        """The newest web files, by mtime: after the recent ones, the likeliest edits."""
        self._fill = heapq.nlargest(HOT, self._web, key=lambda path: self._web[path][0])
        self._rebuild_hot()

    def _rebuild_hot(self) -> None:
        newest_first = [*reversed(self._recent), *self._fill]
        self._hot = list(dict.fromkeys(newest_first))[:HOT]


def _is_web(path: str) -> bool:
    return path.lower().endswith(WEB_SUFFIXES)


def _ignored(name: str) -> bool:
    """Dotfiles and dot-folders (.git among them) and what editors write beside a file."""
    return (
        name.startswith(".")  # also vim's .name.swp and emacs's .#name lock
        or name.endswith(("~", ".tmp", ".swp", ".swx", "___jb_tmp___", "___jb_old___"))
        or (name.startswith("#") and name.endswith("#"))  # emacs's auto-save
        or name == "4913"  # vim creates and deletes it to test that it may write a folder
    )


def _stamp(path: str) -> Stamp:
    try:
        info = os.stat(path)  # through a link: an edit of its target is an edit of what is served
    except OSError:
        return MISSING
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _list(folder: str) -> dict[str, tuple[bool, Stamp]] | None:
    """A folder's entries, whether each is a folder, and its stamp; None if it is gone.

    An unreadable folder lists as empty: what the server cannot read it cannot serve.
    """
    try:
        with os.scandir(folder) as entries:
            return {entry.path: _describe(entry) for entry in entries if not _ignored(entry.name)}
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return {}


def _describe(entry: os.DirEntry[str]) -> tuple[bool, Stamp]:
    # A link to a folder counts as a file whose stamp is its target's: never descended
    # into, so a link back up the tree cannot make the watcher go round forever.
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
        info = entry.stat()
    except OSError:  # gone between the listing and the stat
        return False, MISSING
    return is_dir, (info.st_mtime_ns, info.st_size, info.st_ino)
