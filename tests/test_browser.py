"""The demo site in a real browser: headless Chromium loads every page of www/ from tinyhttp.

Chromium is driven through its DevTools protocol over a pipe (`--remote-debugging-pipe`):
JSON messages, each ended by a NUL byte, on file descriptors 3 (to the browser) and 4 (from
it). That needs nothing beyond the standard library and the browser itself.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pytest

from tests.conftest import Running

WWW = Path(__file__).resolve().parent.parent / "www"
ECHO_LINE = "GET /.well-known/tinyhttp/echo HTTP/1.1"
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]
WIDTH, HEIGHT = 1100, 900
TIMEOUT = 15.0  # for one page to load, or one protocol answer to arrive

Event = dict[str, Any]


def _chromium() -> str | None:
    """The browser to drive: $CHROMIUM if set, else Debian's `chromium` on the PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def _high(fd: int) -> int:
    """A close-on-exec copy of `fd` numbered 10 or more, so that posix_spawn's dup2 onto
    0-4 can never overwrite a descriptor it has yet to copy."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return copy


class DevTools:
    """One Chromium process and its DevTools protocol connection over a pipe."""

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        to_browser_read, to_browser_write = (_high(fd) for fd in os.pipe())
        from_browser_read, from_browser_write = (_high(fd) for fd in os.pipe())
        err = _high(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        argv = [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        # posix_spawn, not fork: the test process runs server threads.
        self.pid = os.posix_spawn(
            executable,
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, err, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
                (os.POSIX_SPAWN_DUP2, to_browser_read, 3),
                (os.POSIX_SPAWN_DUP2, from_browser_write, 4),
            ],
        )
        for fd in (to_browser_read, from_browser_write, err):
            os.close(fd)
        self._out = to_browser_write
        self._in = from_browser_read
        self._buffer = bytearray()
        self._ids = 0
        self.events: list[Event] = []

    # --- the protocol ----------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Call one protocol method and return its result; events that arrive meanwhile
        are kept in `events`."""
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._receive(deadline)
            if answer is None:
                raise TimeoutError(f"no answer to {method}")
            if answer.get("id") == self._ids:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, found: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
        """Take events until `found()` holds or the time is up."""
        deadline = time.monotonic() + timeout
        while not found():
            event = self._receive(deadline)
            if event is None:
                return found()
            self.events.append(event)
        return True

    def drain(self, quiet: float) -> None:
        """Take events until none has come for `quiet` seconds."""
        while (event := self._receive(time.monotonic() + quiet)) is not None:
            self.events.append(event)

    def _receive(self, deadline: float) -> Event | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                return None
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, rest = bytes(self._buffer).partition(b"\0")
        self._buffer = bytearray(rest)
        event: Event = json.loads(message)
        return event

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        if not self._exited(within=10):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._out)
        os.close(self._in)

    def _exited(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class Tab:
    """One page in the browser, and what happened while it loaded."""

    def __init__(self, devtools: DevTools) -> None:
        self.devtools = devtools
        target = devtools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = devtools.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session: str = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Page.setLifecycleEventsEnabled", {"enabled": True})
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.devtools.send(method, params, self.session)

    def mine(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every event of this kind from this tab."""
        return [
            e["params"]
            for e in self.devtools.events
            if e.get("method") == method and e.get("sessionId") == self.session
        ]

    def load(self, url: str) -> None:
        """Navigate, wait for the load event, then for every request to finish."""
        self.devtools.events.clear()
        navigated = self.call("Page.navigate", {"url": url})
        assert "errorText" not in navigated, f"{url}: {navigated['errorText']}"
        loader = navigated["loaderId"]  # this navigation's, not an earlier page's load event
        loaded = self.devtools.wait_for(
            lambda: any(
                p["name"] == "load" and p["loaderId"] == loader
                for p in self.mine("Page.lifecycleEvent")
            )
        )
        assert loaded, f"{url} did not finish loading"
        assert self.devtools.wait_for(self._network_idle), f"{url}: requests still open"
        self.devtools.drain(quiet=0.2)  # late console messages, a favicon

    def click(self, expression: str) -> None:
        """Click the element `expression` finds, then wait for the page it leads to."""
        self.devtools.events.clear()
        self.evaluate(f"({expression}).click()")
        loaded = self.devtools.wait_for(
            lambda: any(p["name"] == "load" for p in self.mine("Page.lifecycleEvent"))
        )
        assert loaded, f"clicking {expression} loaded no page"
        assert self.devtools.wait_for(self._network_idle), f"{expression}: requests still open"
        self.devtools.drain(quiet=0.2)

    def _network_idle(self) -> bool:
        started = {p["requestId"] for p in self.mine("Network.requestWillBeSent")}
        ended = {p["requestId"] for p in self.mine("Network.loadingFinished")}
        ended |= {p["requestId"] for p in self.mine("Network.loadingFailed")}
        return started <= ended

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Every request that did not end 2xx/304, every console error, every page error."""
        found = [
            f"{p['response']['status']} for {p['response']['url']}"
            for p in self.mine("Network.responseReceived")
            if not (200 <= p["response"]["status"] < 300 or p["response"]["status"] == 304)
        ]
        found += [f"failed: {p['errorText']}" for p in self.mine("Network.loadingFailed")]
        found += [
            "console.{}: {}".format(p["type"], " ".join(str(a.get("value")) for a in p["args"]))
            for p in self.mine("Runtime.consoleAPICalled")
            if p["type"] in ("error", "assert")
        ]
        found += [
            f"page error: {p['exceptionDetails'].get('exception', {}).get('description')}"
            for p in self.mine("Runtime.exceptionThrown")
        ]
        found += [
            f"console: {p['entry']['text']} ({p['entry'].get('url', '')})"
            for p in self.mine("Log.entryAdded")
            if p["entry"]["level"] == "error"
        ]
        return found

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the window, as a PNG."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": size["height"], "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    with chromium_devtools(tmp_path) as devtools:
        yield devtools


@contextlib.contextmanager
def chromium_devtools(tmp_path: Path) -> Iterator[DevTools]:
    """A headless Chromium driven over its DevTools pipe; skipped without one, but not in CI."""
    executable = _chromium()
    if executable is None:
        reason = "no Chromium found (install Debian's `chromium`, or set CHROMIUM=/path)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    devtools = DevTools(executable, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        devtools.send("Browser.getVersion")  # it started and speaks the protocol
        yield devtools
    finally:
        devtools.close()


@pytest.fixture
def site_server(serve: Callable[..., Running]) -> Running:
    """tinyhttp serving the real www/ on 127.0.0.1, port 0."""
    return serve(root=WWW)


def site_pages() -> list[str]:
    """Every page of www/, as the URL path a reader follows: each .html file (a folder's
    index.html as the folder), and each folder without an index, which gets a listing."""
    paths: set[str] = set()
    for page in WWW.rglob("*.html"):
        relative = page.relative_to(WWW).as_posix()
        paths.add("/" + relative.removesuffix("index.html"))
    for folder in [WWW, *(p for p in WWW.rglob("*") if p.is_dir())]:
        if not (folder / "index.html").exists():
            paths.add("/" + "".join(part + "/" for part in folder.relative_to(WWW).parts))
    return sorted(paths)


# --- contrast (WCAG 2.x) -------------------------------------------------------------------


def _rgb(css: str) -> tuple[float, float, float, float]:
    """`rgb(1, 2, 3)` or `rgba(1, 2, 3, 0.5)` as numbers."""
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)]
    assert css.startswith("rgb") and len(numbers) in (3, 4), f"unexpected colour {css!r}"
    return numbers[0], numbers[1], numbers[2], numbers[3] if len(numbers) == 4 else 1.0


def _luminance(css: str) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b, _ = _rgb(css)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two opaque colours, from 1 to 21."""
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# The text colour of the first element matching a selector, and the background it sits on:
# the nearest ancestor's (or its own) background that is not transparent.
COLOURS_JS = """
(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  let bg = null;
  for (let node = el; node && !bg; node = node.parentElement) {
    const c = getComputedStyle(node).backgroundColor;
    if (c !== "transparent" && !/rgba\\(.*,\\s*0\\)$/.test(c)) bg = c;
  }
  return [getComputedStyle(el).color, bg || "rgb(255, 255, 255)"];
}
"""


def colours(tab: Tab, selector: str) -> tuple[str, str]:
    found = tab.evaluate(f"({COLOURS_JS})({json.dumps(selector)})")
    assert found is not None, f"nothing matches {selector}"
    return found[0], found[1]


# --- tests ---------------------------------------------------------------------------------


def test_the_site_has_pages_and_a_listing() -> None:
    pages = site_pages()
    assert "/" in pages and "/files/" in pages
    assert len(pages) >= 6, pages
    assert not (WWW / "files" / "index.html").exists()  # so the reader sees a listing


def test_every_page_loads_cleanly_in_a_real_browser(
    browser: DevTools, site_server: Running
) -> None:
    tab = Tab(browser)
    links: set[str] = set()
    loaded: list[str] = []
    for path in site_pages():
        url = urljoin(site_server.url, path)
        tab.load(url)
        assert not tab.problems(), f"{path}: {tab.problems()}"
        documents = [p for p in tab.mine("Network.responseReceived") if p["type"] == "Document"]
        assert [p["response"]["status"] for p in documents] == [200], path
        loaded.append(path)
        if path == "/":
            shown = tab.devtools.wait_for(
                lambda: ECHO_LINE in (tab.evaluate("document.getElementById('echo').textContent")),
                timeout=5,
            )
            text = tab.evaluate("document.getElementById('echo').textContent")
            assert shown, f"the echo section shows: {text!r}"
            assert text.startswith(ECHO_LINE), text
            assert "Host: 127.0.0.1:" in text  # the browser's own capitals, from h11
            echoes = [u for u in _requested_urls(tab) if "/.well-known/tinyhttp/echo" in u]
            assert echoes, "the front page did not fetch the echo"
        links |= set(tab.evaluate("Array.from(document.links, a => a.href)"))
    assert loaded == site_pages()
    _assert_links_work(site_server, links)


def _requested_urls(tab: Tab) -> list[str]:
    return [str(p["request"]["url"]) for p in tab.mine("Network.requestWillBeSent")]


def _assert_links_work(server: Running, links: set[str]) -> None:
    """Every link on the site that stays on this server answers 200 (no broken nav)."""
    origin = urlsplit(server.url).netloc
    local = sorted({u.split("#")[0] for u in links if urlsplit(u).netloc == origin})
    assert len(local) > 10, local
    for url in local:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("HEAD", urlsplit(url).path or "/")
            status = connection.getresponse().status
        finally:
            connection.close()
        assert status == 200, f"{url}: {status}"


def test_front_page_reads_well_in_light_and_dark(
    browser: DevTools, site_server: Running, tmp_path: Path
) -> None:
    tab = Tab(browser)
    backgrounds = {}
    for scheme in ("light", "dark"):
        tab.call(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        tab.load(site_server.url)
        assert not tab.problems(), tab.problems()
        tab.devtools.wait_for(
            lambda: ECHO_LINE in tab.evaluate("document.getElementById('echo').textContent"),
            timeout=5,
        )
        assert tab.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
        shot = tab.screenshot(tmp_path / f"front-page-{scheme}.png")
        print(f"screenshot ({scheme}): {shot}")
        backgrounds[scheme] = colours(tab, "main p")[1]
        for selector in ("main p", ".note", "main a", "pre", ".site li a"):
            foreground, behind = colours(tab, selector)
            ratio = contrast(foreground, behind)
            assert ratio >= 4.5, f"{scheme}: {selector} is {foreground} on {behind}: {ratio:.2f}"
    assert backgrounds["light"] != backgrounds["dark"], backgrounds
    assert _luminance(backgrounds["light"]) > _luminance(backgrounds["dark"])


def test_front_page_says_when_the_echo_is_off(
    browser: DevTools, serve: Callable[..., Running]
) -> None:
    server = serve(root=WWW, echo=False)
    tab = Tab(browser)
    tab.load(server.url)
    shown = tab.devtools.wait_for(
        lambda: "echo is off" in tab.evaluate("document.getElementById('echo').textContent"),
        timeout=5,
    )
    text = tab.evaluate("document.getElementById('echo').textContent")
    assert shown, text
    assert "curl -v" in text and "--trace" in text
    statuses = {
        p["response"]["url"]: p["response"]["status"] for p in tab.mine("Network.responseReceived")
    }
    assert statuses[urljoin(server.url, "/.well-known/tinyhttp/echo")] == 404


# --- the pages tinyhttp writes itself: listings and error pages ----------------------------

ODD = "<b>&\"' odd"  # a folder name that must be escaped as text and quoted in links
DEEP = f"/files/notes/{ODD}/"  # a listing three folders down, in a copy of www/
MISSING = "/no/such/page.html"


@pytest.fixture
def copy_server(serve: Callable[..., Running], tmp_path: Path) -> Running:
    """tinyhttp serving a copy of www/ with one more folder, deep and oddly named."""
    root = tmp_path / "site-copy"
    shutil.copytree(WWW, root)
    (root / DEEP.strip("/")).mkdir()
    (root / DEEP.strip("/") / "deep.txt").write_bytes(b"three folders down\n")
    return serve(root=root)


def _url(server: Running, path: str) -> str:
    return urljoin(server.url, quote(path))


def _problems_besides(tab: Tab, url: str, status: int) -> list[str]:
    """tab.problems(), less the page's own status when an error page is what was asked for:
    Chromium reports a 404 document on the console too."""
    expected = {
        f"{status} for {url}",
        f"console: Failed to load resource: the server responded with a status of {status} "
        f"({HTTPStatus(status).phrase}) ({url})",
    }
    return [problem for problem in tab.problems() if problem not in expected]


def _load_only(tab: Tab, url: str, status: int) -> None:
    """Load a page tinyhttp writes, and check it came clean and asked for nothing more."""
    tab.load(url)
    assert not _problems_besides(tab, url, status), _problems_besides(tab, url, status)
    documents = [p for p in tab.mine("Network.responseReceived") if p["type"] == "Document"]
    assert [p["response"]["status"] for p in documents] == [status], url
    # No stylesheet, font, image or script: only the browser's own favicon request.
    assert set(_requested_urls(tab)) <= {url, urljoin(url, "/favicon.ico")}, _requested_urls(tab)


# Body text and links, whose contrast must be 4.5:1 or more (WCAG 2.x, 1.4.3).
LISTING_TEXT = ("h1", ".crumbs", ".crumbs [aria-current]", ".crumbs a", "th", "td a", "td.size")
BUILT_IN = [
    # name, path, status, what to check the contrast of
    ("listing", "/files/", 200, (*LISTING_TEXT, "td.modified", ".brand")),
    ("listing-deep", DEEP, 200, LISTING_TEXT),
    ("404", MISSING, 404, ("h1", "main p", "main a", ".brand")),
]


def test_listing_and_error_page_read_well_in_light_and_dark(
    browser: DevTools, copy_server: Running, tmp_path: Path
) -> None:
    tab = Tab(browser)
    backgrounds: dict[str, dict[str, str]] = {name: {} for name, *_ in BUILT_IN}
    for scheme in ("light", "dark"):
        tab.call(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        for name, path, status, selectors in BUILT_IN:
            _load_only(tab, _url(copy_server, path), status)
            shot = tab.screenshot(tmp_path / f"{name}-{scheme}.png")
            print(f"screenshot ({name}, {scheme}): {shot}")
            backgrounds[name][scheme] = colours(tab, "h1")[1]
            for selector in selectors:
                foreground, behind = colours(tab, selector)
                ratio = contrast(foreground, behind)
                assert ratio >= 4.5, (
                    f"{name} {scheme}: {selector}: {foreground} on {behind}: {ratio:.2f}"
                )
    for name, seen in backgrounds.items():
        assert seen["light"] != seen["dark"], (name, seen)
        assert _luminance(seen["light"]) > _luminance(seen["dark"]), (name, seen)


# How a cell is laid out: its alignment, its digits, whether it may wrap.
LAYOUT_JS = """
(selector) => {
  const style = getComputedStyle(document.querySelector(selector));
  return [style.textAlign, style.fontVariantNumeric, style.whiteSpace];
}
"""


def test_listing_lines_up_sizes_and_dates(browser: DevTools, copy_server: Running) -> None:
    tab = Tab(browser)
    _load_only(tab, _url(copy_server, "/files/"), 200)
    size = tab.evaluate(f"({LAYOUT_JS})('td.size')")
    modified = tab.evaluate(f"({LAYOUT_JS})('td.modified')")
    assert size == ["right", "tabular-nums", "nowrap"]
    assert modified == ["left", "tabular-nums", "nowrap"]


def test_breadcrumb_links_lead_to_each_folder_above(
    browser: DevTools, copy_server: Running
) -> None:
    tab = Tab(browser)
    _load_only(tab, _url(copy_server, DEEP), 200)
    crumbs = tab.evaluate(
        "Array.from(document.querySelectorAll('.crumbs li'),"
        " li => [li.textContent, li.querySelector('a') !== null])"
    )
    assert crumbs == [["/", True], ["files", True], ["notes", True], [ODD, False]]
    assert tab.evaluate("document.querySelector('h1').textContent") == f"Index of {DEEP}"
    for position, path in enumerate(["/", "/files/", "/files/notes/"]):
        _load_only(tab, _url(copy_server, DEEP), 200)
        tab.click(f"document.querySelectorAll('.crumbs a')[{position}]")
        assert _path_shown(tab) == path


@pytest.mark.parametrize(
    ("path", "status", "link"),
    [(DEEP, 200, ".brand"), (MISSING, 404, ".brand"), (MISSING, 404, "main p a")],
    ids=["listing-bar", "404-bar", "404-way-back"],
)
def test_root_links_lead_to_the_front_page(
    browser: DevTools, copy_server: Running, path: str, status: int, link: str
) -> None:
    tab = Tab(browser)
    _load_only(tab, _url(copy_server, path), status)
    tab.click(f"document.querySelector({json.dumps(link)})")
    assert _path_shown(tab) == "/"


def _path_shown(tab: Tab) -> str:
    """The path of the page the tab shows now, decoded, once it loaded with a 200."""
    documents = [p for p in tab.mine("Network.responseReceived") if p["type"] == "Document"]
    assert [p["response"]["status"] for p in documents] == [200]
    assert not tab.problems(), tab.problems()
    return str(tab.evaluate("decodeURIComponent(location.pathname)"))


def test_contrast_formula() -> None:
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21)
    assert contrast("rgb(119, 119, 119)", "rgb(255, 255, 255)") == pytest.approx(4.48, abs=0.01)
    assert contrast("rgb(10, 20, 30)", "rgb(10, 20, 30)") == pytest.approx(1)
