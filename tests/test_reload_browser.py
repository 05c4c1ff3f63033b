"""--reload in a real browser: headless Chromium keeps a page of a live site open while its
files are edited, and must show every edit, reloading the page for HTML and new files and
restyling it in place (no navigation, scroll kept) for a stylesheet.

The browser is driven as in test_browser.py (DevTools protocol over a pipe). An open event
stream never finishes loading, so Tab.load's wait for every request to end cannot be used
here: a page counts as ready once its load event fired and its event stream is open (only
then is an edit sure to be heard).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from tests.conftest import Running
from tests.test_browser import DevTools, Tab, chromium_devtools
from tinyhttp.connection import Wait
from tinyhttp.reload import PATH, RETRY_MS, TICK

WAIT = 10.0  # for one edit to show, or one page to become ready, on a busy machine
POLL = 0.01  # between two looks at the page while waiting for an edit to show
PACE = 0.1  # between an edit shown and the next edit, as a person's edits are paced
LATENCY_EDITS = 9  # of each kind, for the medians
LATENCY_BUDGET = 0.3  # seconds from the save to the tab showing it, median

INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>live</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/style.css">
</head>
<body>
<h1 id="text">{text}</h1>
<div style="height: 6000px">a page tall enough to scroll</div>
</body>
</html>
"""
STYLE = "h1 {{ color: {colour}; }}\n"
FIRST_TEXT = "first version"
FIRST_COLOUR = "rgb(200, 0, 0)"

TEXT_JS = "document.getElementById('text')?.textContent"
COLOUR_JS = "(e => e && getComputedStyle(e).color)(document.getElementById('text'))"
# What a reader sees of the heading: its text and, once the stylesheet applies, its colour.
# Text alone shows up before a new page's stylesheet has loaded (and it paints later).
SHOWN_JS = f"[{TEXT_JS}, {COLOUR_JS}]"
LINKS_JS = "document.querySelectorAll('link[rel~=stylesheet]').length"
MARK_JS = "window.tinyhttpTestMark"  # set on a page; a new document has none


# --- the site, the server, the browser -----------------------------------------------------


def _save(path: Path, text: str) -> None:
    """Write a file in place, as an editor's plain save does (truncate, then write)."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


@pytest.fixture
def live_site(tmp_path: Path) -> Path:
    """A small site: a page whose heading is coloured by a stylesheet, and a subfolder."""
    root = tmp_path / "live"
    (root / "sub").mkdir(parents=True)
    _save(root / "index.html", INDEX.format(text=FIRST_TEXT))
    _save(root / "style.css", STYLE.format(colour=FIRST_COLOUR))
    _save(root / "sub" / "page.html", "<!doctype html><title>sub</title><p>sub</p>\n")
    return root


@pytest.fixture
def live(serve: Callable[..., Running], live_site: Path) -> Running:
    """tinyhttp --reload serving the live site on 127.0.0.1, port 0."""
    return serve(root=live_site, reload=True, cache_settle_seconds=0)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    with chromium_devtools(tmp_path) as devtools:
        yield devtools


# --- watching a page that never finishes loading -------------------------------------------


def _since(tab: Tab, mark: int, method: str) -> list[tuple[int, dict[str, Any]]]:
    """This tab's events of one kind from the `mark`-th event on, with their positions."""
    events = tab.devtools.events
    return [
        (at, events[at]["params"])
        for at in range(mark, len(events))
        if events[at].get("method") == method and events[at].get("sessionId") == tab.session
    ]


def _documents(tab: Tab, mark: int) -> list[int]:
    """Where a new document was committed in the tab's main frame since `mark`."""
    return [
        at for at, p in _since(tab, mark, "Page.frameNavigated") if "parentId" not in p["frame"]
    ]


def _ready_after(tab: Tab, mark: int, stream: bool = True) -> bool:
    """A document committed since `mark` has fired its load event and (if `stream`) opened
    its event stream."""
    documents = _documents(tab, mark)
    if not documents:
        return False
    last = documents[-1]
    loaded = _since(tab, last, "Page.loadEventFired")
    streams = [
        p for _, p in _since(tab, last, "Network.responseReceived") if p["type"] == "EventSource"
    ]
    return bool(loaded) and (not stream or any(p["response"]["status"] == 200 for p in streams))


def _wait_ready(tab: Tab, mark: int, what: str, stream: bool = True) -> None:
    ready = tab.devtools.wait_for(lambda: _ready_after(tab, mark, stream), timeout=WAIT)
    opened = " with an open event stream" if stream else ""
    assert ready, f"{what}: no new document{opened} within {WAIT} s"


def _stream_opened(tab: Tab, mark: int) -> bool:
    return any(p["type"] == "EventSource" for _, p in _since(tab, mark, "Network.responseReceived"))


def _open(tab: Tab, url: str) -> None:
    """Navigate and wait until the page can hear an edit."""
    mark = len(tab.devtools.events)
    navigated = tab.call("Page.navigate", {"url": url})
    assert "errorText" not in navigated, f"{url}: {navigated['errorText']}"
    _wait_ready(tab, mark, url)


def _value(tab: Tab, expression: str) -> Any:
    """The expression's value in the page now; None while the page is being replaced."""
    try:
        result = tab.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
    except RuntimeError:  # no context to evaluate in, mid-navigation
        return None
    if "exceptionDetails" in result:
        return None
    return result["result"].get("value")


def _until(tab: Tab, condition: Callable[[], bool], what: Callable[[], str]) -> float:
    """Check `condition` every POLL, taking the browser's events meanwhile, until it holds;
    the moment it did. `what` says what was seen instead if it never does."""
    deadline = time.monotonic() + WAIT
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() >= deadline:
            pytest.fail(f"after {WAIT} s: {what()}")
        tab.devtools.wait_for(lambda: False, timeout=POLL)


def _until_shown(tab: Tab, expression: str, wanted: Any) -> float:
    """Look at the page until the expression's value is `wanted`; the moment it was."""
    return _until(
        tab,
        lambda: _value(tab, expression) == wanted,
        lambda: f"{expression} is {_value(tab, expression)!r}, not {wanted!r}",
    )


def _pause(tab: Tab, seconds: float) -> None:
    """Pace the next edit, taking the browser's events meanwhile."""
    tab.devtools.wait_for(lambda: False, timeout=seconds)


def _errors(tab: Tab) -> list[str]:
    """Console errors, failed assertions, uncaught page errors and browser-logged errors."""
    found = [
        "console.{}: {}".format(p["type"], " ".join(str(a.get("value")) for a in p["args"]))
        for _, p in _since(tab, 0, "Runtime.consoleAPICalled")
        if p["type"] in ("error", "assert")
    ]
    found += [
        f"page error: {p['exceptionDetails'].get('exception', {}).get('description')}"
        for _, p in _since(tab, 0, "Runtime.exceptionThrown")
    ]
    found += [
        f"log: {p['entry']['text']} ({p['entry'].get('url', '')})"
        for _, p in _since(tab, 0, "Log.entryAdded")
        if p["entry"]["level"] == "error"
    ]
    return found


def _bad_answers(tab: Tab) -> list[str]:
    """Every answer that was not 2xx or 304."""
    return [
        f"{p['response']['status']} for {p['response']['url']}"
        for _, p in _since(tab, 0, "Network.responseReceived")
        if not (200 <= p["response"]["status"] < 300 or p["response"]["status"] == 304)
    ]


def _assert_clean(tab: Tab, allowed: tuple[str, ...] = ()) -> None:
    _pause(tab, 0.2)  # late console messages
    errors = [error for error in _errors(tab) if error not in allowed]
    assert not errors, errors
    assert not _bad_answers(tab), _bad_answers(tab)


def _streams(running: Running) -> int:
    """How many event streams the server holds open (read from the test's thread: a copy of
    the keys, then one attribute of each, so nothing the loop changes is iterated)."""
    return sum(1 for conn in list(running.server.clients) if conn.waiting is Wait.STREAM)


def _mark_the_page(tab: Tab) -> None:
    assert _value(tab, f"{MARK_JS} = 42") == 42


@pytest.fixture
def tab(browser: DevTools, live: Running) -> Tab:
    """A tab showing the live site's front page, its event stream open."""
    opened = Tab(browser)
    _open(opened, live.url)
    assert _value(opened, TEXT_JS) == FIRST_TEXT
    assert _value(opened, COLOUR_JS) == FIRST_COLOUR
    return opened


# --- the tests -----------------------------------------------------------------------------


def test_an_html_edit_reloads_the_tab(tab: Tab, live_site: Path) -> None:
    _mark_the_page(tab)
    mark = len(tab.devtools.events)
    _save(live_site / "index.html", INDEX.format(text="second version, longer"))
    _until_shown(tab, TEXT_JS, "second version, longer")
    assert _documents(tab, mark), "the text changed without a new document"
    assert _value(tab, f"typeof {MARK_JS}") == "undefined"  # a new document: the mark is gone
    _wait_ready(tab, mark, "after the edit")
    assert _value(tab, COLOUR_JS) == FIRST_COLOUR  # and styled, once loaded
    _assert_clean(tab)


def test_a_css_edit_restyles_without_a_navigation(tab: Tab, live_site: Path) -> None:
    _mark_the_page(tab)
    assert _value(tab, "window.scrollTo(0, 1234), window.scrollY") == 1234
    mark = len(tab.devtools.events)
    _save(live_site / "style.css", STYLE.format(colour="rgb(0, 90, 200)"))
    _until_shown(tab, COLOUR_JS, "rgb(0, 90, 200)")
    _until_shown(tab, LINKS_JS, 1)  # the old <link> goes once its copy has loaded
    assert _value(tab, MARK_JS) == 42, "the page was reloaded"
    assert _value(tab, "window.scrollY") == 1234, "the scroll position was lost"
    assert not _documents(tab, mark), "the page navigated"
    assert not _stream_opened(tab, mark), "the event stream was opened again"
    href = _value(tab, "document.querySelector('link[rel~=stylesheet]').href")
    assert "/style.css?tinyhttp-reload=" in href, href
    _assert_clean(tab)


def test_a_new_file_in_a_subfolder_reloads_the_tab(tab: Tab, live_site: Path) -> None:
    _mark_the_page(tab)
    mark = len(tab.devtools.events)
    _save(live_site / "sub" / "new.html", "<!doctype html><title>new</title><p>new</p>\n")
    _until_shown(tab, f"typeof {MARK_JS}", "undefined")
    assert _documents(tab, mark), "no new document"
    _wait_ready(tab, mark, "after the new file")
    assert _value(tab, TEXT_JS) == FIRST_TEXT
    _assert_clean(tab)


def _pace(number: int) -> float:
    """The wait before the edit after edit `number`: a little longer each time, by a share
    of the watcher's tick, so that the saves fall all over its polling period rather than
    at one phase of it (each edit is timed from the event that showed the one before)."""
    return PACE + TICK * number / LATENCY_EDITS


def test_edits_show_in_the_tab_quickly(tab: Tab, live_site: Path) -> None:
    """From the save to the tab showing it: the medians of several paced edits."""
    html: list[float] = []
    for number in range(1, LATENCY_EDITS + 1):
        text = f"edit {number} " + "!" * number  # a new size, whatever the mtime's grain
        mark = len(tab.devtools.events)
        started = time.monotonic()
        _save(live_site / "index.html", INDEX.format(text=text))
        html.append(_until_shown(tab, SHOWN_JS, [text, FIRST_COLOUR]) - started)
        _wait_ready(tab, mark, f"HTML edit {number}")  # its stream is open for the next one
        _pause(tab, _pace(number))
    _mark_the_page(tab)
    css: list[float] = []
    for number in range(1, LATENCY_EDITS + 1):
        colour = f"rgb({number * 20}, 100, {250 - number * 20})"
        started = time.monotonic()
        _save(live_site / "style.css", STYLE.format(colour=colour))
        css.append(_until_shown(tab, COLOUR_JS, colour) - started)
        _until_shown(tab, LINKS_JS, 1)
        _pause(tab, _pace(number))
    assert _value(tab, MARK_JS) == 42, "a stylesheet edit reloaded the page"
    html_ms, css_ms = statistics.median(html) * 1000, statistics.median(css) * 1000
    print(
        f"\nedit to tab, median of {LATENCY_EDITS}: HTML {html_ms:.0f} ms, CSS {css_ms:.0f} ms"
        f"\n  HTML: {json.dumps([round(t * 1000) for t in html])}"
        f"\n  CSS:  {json.dumps([round(t * 1000) for t in css])}"
    )
    assert html_ms <= LATENCY_BUDGET * 1000, html
    assert css_ms <= LATENCY_BUDGET * 1000, css
    _assert_clean(tab)


def test_a_restarted_server_reloads_the_tab_once(
    tab: Tab, live: Running, serve: Callable[..., Running], live_site: Path
) -> None:
    _mark_the_page(tab)
    stopping = time.monotonic()
    live.server.stop()  # ends the event stream; the browser tries again RETRY_MS later
    live.thread.join(WAIT)
    assert not live.thread.is_alive(), "the server did not stop"
    stopped = time.monotonic()
    mark = len(tab.devtools.events)
    again = serve(root=live_site, port=live.port, reload=True, cache_settle_seconds=0)
    assert again.port == live.port
    _until_shown(tab, f"typeof {MARK_JS}", "undefined")
    reloaded = time.monotonic()
    _wait_ready(tab, mark, "after the restart")
    _pause(tab, 3 * RETRY_MS / 1000)  # no second reload comes
    assert len(_documents(tab, mark)) == 1, "the tab reloaded more than once"
    assert _value(tab, TEXT_JS) == FIRST_TEXT
    # While the server is down, each try to reopen the stream is refused, and Chromium logs
    # it as an error: that is the browser's doing, and it says only what happened.
    stream = urljoin(live.url, PATH)
    refused = f"log: Failed to load resource: net::ERR_CONNECTION_REFUSED ({stream})"
    print(
        f"\nrestart: stopped in {(stopped - stopping) * 1000:.0f} ms, tab reloaded"
        f" {(reloaded - stopped) * 1000:.0f} ms after the restart,"
        f" {_errors(tab).count(refused)} refused tries to reopen the stream"
    )
    _assert_clean(tab, allowed=(refused,))


def test_two_tabs_share_one_stream_and_both_follow_edits(
    browser: DevTools, live: Running, live_site: Path
) -> None:
    """One EventSource per browser (a Web Lock picks the tab that listens, a
    BroadcastChannel tells the other), and both tabs follow every edit."""
    first, second = Tab(browser), Tab(browser)
    tabs = (first, second)
    _open(first, live.url)
    mark = len(browser.events)
    second.call("Page.navigate", {"url": live.url})
    _wait_ready(second, mark, "the second tab", stream=False)
    _pause(second, 0.3)  # time enough for a second stream, if one were to be opened
    assert not _stream_opened(second, mark), "the second tab opened a stream of its own"
    assert _streams(live) == 1
    for tab in tabs:
        _mark_the_page(tab)

    _save(live_site / "style.css", STYLE.format(colour="rgb(0, 128, 0)"))
    for tab in tabs:
        _until_shown(tab, COLOUR_JS, "rgb(0, 128, 0)")
        assert _value(tab, MARK_JS) == 42, "a stylesheet edit reloaded a tab"

    mark = len(browser.events)
    _save(live_site / "index.html", INDEX.format(text="both tabs see this"))
    for tab in tabs:
        _until_shown(tab, TEXT_JS, "both tabs see this")
        assert _documents(tab, mark), "the text changed without a new document"
        _wait_ready(tab, mark, "after the edit", stream=False)
    # Both pages were replaced, and one of the new ones listens: one stream, not zero or two.
    _until(first, lambda: _streams(live) == 1, lambda: f"{_streams(live)} streams open")
    _pause(first, 0.3)
    assert _streams(live) == 1
    # ...and only the new page opened one: an old page that took the lock on its way out
    # would open a stream and drop it at once.
    asked = [
        p["request"]["url"]
        for tab in tabs
        for _, p in _since(tab, mark, "Network.requestWillBeSent")
        if p["request"]["url"].endswith(PATH)
    ]
    assert len(asked) == 1, f"{len(asked)} streams asked for after the edit"

    _save(live_site / "style.css", STYLE.format(colour="rgb(0, 0, 160)"))
    for tab in tabs:
        _until_shown(tab, COLOUR_JS, "rgb(0, 0, 160)")
        _assert_clean(tab)
