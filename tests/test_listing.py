"""Directory listings and the built-in pages: order, escaping, links, the breadcrumb, the frame
they share with error pages, and the JSON twin, as pure calls."""

from __future__ import annotations

import calendar
import json
import re
from html.parser import HTMLParser
from http import HTTPStatus
from urllib.parse import unquote

import pytest

from tinyhttp.listing import Entry, html_listing, json_listing, sort_entries
from tinyhttp.pages import error_page

MTIME = calendar.timegm((2026, 11, 24, 21, 5, 42))  # 2026-11-24 21:05:42 UTC

HOSTILE_NAMES = [
    "<script>alert(1)</script>.txt",
    "a\"b'.txt",
    "&amp;",
    "100% #1?.txt",
    "with space.txt",
    "café ☕ 日本.txt",
    "javascript:alert(1)",
    "a:b",
]
# Attributes whose value a browser loads or follows (HTML Living Standard).
URL_ATTRIBUTES = {"href", "src", "srcset", "action", "formaction", "poster", "data", "ping"}


def file(name: str, size: int = 10, mtime: float = MTIME) -> Entry:
    return Entry(name=name, is_dir=False, size=size, mtime=mtime)


def folder(name: str) -> Entry:
    return Entry(name=name, is_dir=True, size=4096, mtime=MTIME)


class Page(HTMLParser):
    """What a browser would see: tables, rows, cell texts and link targets."""

    def __init__(self, page: bytes) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str] = []  # the links in the table: the entries, and ../
        self.links: list[str] = []  # the text of each of those links
        self.frame_hrefs: list[str] = []  # every other link: the bar's, the breadcrumb's
        self.crumbs: list[tuple[str, str | None]] = []  # each crumb's text, and its link if any
        self.marked_current: list[str] = []  # the tags marked aria-current
        self.urls: list[str] = []  # every attribute that names something to fetch or follow
        self.style = ""
        self.title = ""
        self.h1 = ""
        self._inside: list[str] = []
        self.feed(page.decode("utf-8"))
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._inside.append(tag)
        values = dict(attrs)
        self.urls += [v or "" for k, v in attrs if k in URL_ATTRIBUTES]
        if "aria-current" in values:
            self.marked_current.append(tag)
        if tag == "li" and "nav" in self._inside:
            self.crumbs.append(("", None))
        if tag == "a" and "table" in self._inside:
            self.hrefs.append(values["href"] or "")
            self.links.append("")
        elif tag == "a":
            self.frame_hrefs.append(values["href"] or "")
            if self.crumbs and "li" in self._inside:
                self.crumbs[-1] = (self.crumbs[-1][0], values["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in self._inside:
            del self._inside[len(self._inside) - 1 - self._inside[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if "a" in self._inside and "table" in self._inside:
            self.links[-1] += data
        if "li" in self._inside and "nav" in self._inside:
            self.crumbs[-1] = (self.crumbs[-1][0] + data, self.crumbs[-1][1])
        for tag in ("title", "h1", "style"):
            if tag in self._inside:
                setattr(self, tag, getattr(self, tag) + data)


# --- order ---------------------------------------------------------------------------------


def test_folders_come_first_then_names_ignoring_case() -> None:
    entries = [file("b.txt"), folder("zeta"), file("A.txt"), folder("Alpha"), file("a.txt")]
    names = [entry.name for entry in sort_entries(entries)]
    assert names == ["Alpha", "zeta", "A.txt", "a.txt", "b.txt"]


def test_sort_is_the_same_whatever_the_input_order() -> None:
    entries = [file("B"), file("b"), file("a"), folder("c"), folder("C")]
    assert sort_entries(entries) == sort_entries(reversed(entries))
    assert [e.name for e in sort_entries(entries)] == ["C", "c", "a", "B", "b"]


def test_sort_accepts_any_iterable_and_returns_a_new_list() -> None:
    assert sort_entries(iter([file("b"), file("a")])) == [file("a"), file("b")]
    assert sort_entries([]) == []


# --- the HTML page -------------------------------------------------------------------------


def test_page_is_a_complete_html5_document() -> None:
    page = html_listing("/docs/", [file("a.txt")])
    text = page.decode("utf-8")
    assert text.startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in text
    assert 'name="viewport"' in text
    assert '<meta name="color-scheme" content="light dark">' in text
    assert "color-scheme: light dark;" in text  # in the inline <style> too
    parsed = Page(page)
    assert parsed.title == parsed.h1 == "Index of /docs/"


def test_one_table_with_a_row_per_entry_plus_header_and_parent() -> None:
    entries = sort_entries([file("a.txt"), folder("sub"), file("b.txt")])
    page = Page(html_listing("/docs/", entries))
    assert page.tags.count("table") == 1
    assert page.tags.count("tr") == 1 + 1 + 3  # header, ../, entries
    assert page.links == ["../", "sub/", "a.txt", "b.txt"]
    assert page.hrefs == ["../", "./sub/", "./a.txt", "./b.txt"]


def test_no_parent_link_at_the_root() -> None:
    page = Page(html_listing("/", [file("a.txt")]))
    assert page.tags.count("tr") == 1 + 1
    assert "../" not in page.hrefs
    assert page.links == ["a.txt"]


def test_empty_folder_still_has_a_table() -> None:
    page = Page(html_listing("/empty/", []))
    assert page.tags.count("table") == 1
    assert page.hrefs == ["../"]


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1234, "1.2 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),  # not `1024.0 KiB`
        (5 * 1024**3 + 1, "5.0 GiB"),
        (3 * 1024**6, "3072.0 PiB"),
    ],
)
def test_sizes_are_human_readable(size: int, shown: str) -> None:
    assert f'<td class="size">{shown}</td>' in html_listing("/", [file("f", size)]).decode()


def test_folders_show_a_dash_for_size_and_a_trailing_slash() -> None:
    text = html_listing("/", [folder("sub")]).decode("utf-8")
    assert '<td class="size">\u2014</td>' in text
    assert '<a href="./sub/">sub/</a>' in text


def test_modification_time_is_shown_in_utc_to_the_minute() -> None:
    text = html_listing("/", [file("a.txt")]).decode()
    assert "2026-11-24 21:05" in text
    assert 'datetime="2026-11-24T21:05:42Z"' in text


@pytest.mark.parametrize("mtime", [-1e12, 1e15, 0.0])
def test_times_outside_four_digit_years_do_not_crash(mtime: float) -> None:
    assert b"<table>" in html_listing("/", [file("a.txt", mtime=mtime)])
    json.loads(json_listing("/", [file("a.txt", mtime=mtime)]))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_shown_as_text_and_linked_relatively(name: str) -> None:
    page_bytes = html_listing("/", [file(name)])
    page = Page(page_bytes)
    assert page.links == [name]  # a browser shows the name exactly, as text
    assert page.tags.count("script") == 0
    (href,) = page.hrefs
    assert href.startswith("./")
    assert unquote(href[2:], errors="strict") == name  # percent-quoted UTF-8 round-trips
    assert not set(href[2:]) & set("#?:; \"'<>&")  # nothing that ends the path or the attribute


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_folder_names_link_with_a_trailing_slash(name: str) -> None:
    page = Page(html_listing("/", [folder(name)]))
    assert page.links == [name + "/"]
    assert page.hrefs[0].startswith("./") and page.hrefs[0].endswith("/")
    assert unquote(page.hrefs[0][2:-1]) == name


def test_raw_markup_never_reaches_the_page() -> None:
    text = html_listing("/", [file("<script>alert(1)</script>.txt"), file("&amp;")]).decode()
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.txt" in text
    assert "&amp;amp;" in text  # the name `&amp;` is shown literally, not as `&`


def test_non_ascii_names_are_utf8_and_percent_quoted() -> None:
    text = html_listing("/", [file("café.txt")]).decode("utf-8")
    assert '<a href="./caf%C3%A9.txt">café.txt</a>' in text


def test_url_path_is_escaped_wherever_shown() -> None:
    path = "/<img src=x onerror=alert(1)>/&\"'/"
    text = html_listing(path, []).decode()
    assert "<img" not in text
    assert text.count("Index of /&lt;img src=x onerror=alert(1)&gt;/&amp;&quot;&#x27;/") == 2
    assert Page(text.encode()).title == f"Index of {path}"


def test_undecodable_name_bytes_are_shown_replaced_and_linked_as_bytes() -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # what os.listdir gives back
    page = Page(html_listing("/", [file(name)]))
    assert page.links == ["caf\ufffd.txt"]
    assert page.hrefs == ["./caf%E9.txt"]
    assert json.loads(json_listing("/", [file(name)]))["entries"][0]["href"] == "./caf%E9.txt"


def test_sizes_line_up_on_the_right_and_dates_digit_under_digit() -> None:
    style = Page(html_listing("/", [file("a.txt")])).style
    assert ".size { text-align: right; }" in style
    assert "font-variant-numeric: tabular-nums;" in style  # every digit the same width


# --- the breadcrumb and the way back to the root -------------------------------------------


def test_breadcrumb_links_the_root_and_every_folder_above() -> None:
    page = Page(html_listing("/files/sub/deep/", []))
    assert page.crumbs == [("/", "/"), ("files", "/files/"), ("sub", "/files/sub/"), ("deep", None)]
    assert page.marked_current == ["li"]  # the folder shown is marked, not linked


def test_breadcrumb_at_the_root_is_the_root_alone() -> None:
    page = Page(html_listing("/", []))
    assert page.crumbs == [("/", None)]


@pytest.mark.parametrize("name", ["<b>&\"'", *(n for n in HOSTILE_NAMES if "/" not in n)])
def test_breadcrumb_shows_odd_folder_names_as_text_and_quotes_their_links(name: str) -> None:
    text = html_listing(f"/{name}/sub/", []).decode("utf-8")
    page = Page(text.encode())
    assert page.crumbs[1][0] == name  # shown exactly, as text
    href = page.crumbs[1][1] or ""
    assert href.startswith("/") and href.endswith("/") and not href.startswith("//")
    assert unquote(href[1:-1], errors="strict") == name
    assert not set(href[1:-1]) & set("/#?:; \"'<>&")  # nothing that ends the path or attribute
    assert "<b>" not in text and "<script>" not in text


def test_breadcrumb_keeps_undecodable_bytes_as_bytes() -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    page = Page(html_listing(f"/{name}/x/", []))
    assert page.crumbs[1] == ("caf\ufffd", "/caf%E9/")


def test_a_listing_links_to_the_root_from_its_bar() -> None:
    for path in ("/", "/files/", "/files/sub/"):
        page = Page(html_listing(path, []))
        assert page.frame_hrefs[0] == "/", path
        assert page.tags.count("header") == 1


# --- the JSON twin -------------------------------------------------------------------------


def test_json_matches_the_entries() -> None:
    entries = sort_entries([file("a.txt", 1234), folder("sub"), file("café #1.txt", 0)])
    raw = json_listing("/docs/", entries)
    assert raw.endswith(b"}\n") and raw.count(b"\n") == 1
    document = json.loads(raw.decode("utf-8"))
    assert document["path"] == "/docs/"
    assert document["entries"] == [
        {
            "name": "sub",
            "type": "directory",
            "size": 4096,
            "modified": "2026-11-24T21:05:42Z",
            "href": "./sub/",
        },
        {
            "name": "a.txt",
            "type": "file",
            "size": 1234,
            "modified": "2026-11-24T21:05:42Z",
            "href": "./a.txt",
        },
        {
            "name": "café #1.txt",
            "type": "file",
            "size": 0,
            "modified": "2026-11-24T21:05:42Z",
            "href": "./caf%C3%A9%20%231.txt",
        },
    ]


def test_json_is_utf8_not_ascii_escaped() -> None:
    assert "café".encode() in json_listing("/", [file("café")])


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_json_hrefs_round_trip_and_stay_relative(name: str) -> None:
    (entry,) = json.loads(json_listing("/x/", [file(name)]))["entries"]
    assert entry["name"] == name
    assert entry["href"].startswith("./")
    assert unquote(entry["href"][2:]) == name


def test_json_keeps_a_hostile_path_as_data() -> None:
    path = '/"</script>\\/'
    assert json.loads(json_listing(path, []))["path"] == path


# --- the frame every built-in page shares --------------------------------------------------

ERROR_PAGES = [
    error_page(404, "Not Found", "No such file."),
    error_page(301, "Moved Permanently", 'It is at <a href="/files/">/files/</a>.'),
    error_page(503, "Service Unavailable", "The server is too busy; try again shortly."),
]
LISTINGS = [
    html_listing("/", [folder("files"), file("a.txt")]),
    html_listing("/<b>&\"'/sub/", sort_entries([*map(file, HOSTILE_NAMES), folder("a:b")])),
]


def test_error_page_has_the_status_the_sentence_and_a_way_back() -> None:
    body = error_page(404, "Not Found", "No such <em>file</em>.")
    page = Page(body)
    assert page.title == page.h1 == "404 Not Found"
    assert b"No such <em>file</em>." in body  # the sentence is safe HTML, kept as it is
    assert page.frame_hrefs == ["/", "/"]  # the bar, and a link back to the root
    assert page.tags.count("main") == 1


def test_error_page_keeps_a_link_in_its_sentence() -> None:
    assert Page(ERROR_PAGES[1]).frame_hrefs == ["/", "/files/", "/"]


def test_error_pages_are_small() -> None:
    sentence = "The server is too busy to open the file; try again shortly."  # the longest
    for status in HTTPStatus:
        assert len(error_page(status.value, status.phrase, sentence)) < 2500, status


@pytest.mark.parametrize("body", [*ERROR_PAGES, *LISTINGS])
def test_every_page_is_light_and_dark(body: bytes) -> None:
    text = body.decode("utf-8")
    assert '<meta name="color-scheme" content="light dark">' in text
    style = Page(body).style
    assert "color-scheme: light dark;" in style
    assert "@media (prefers-color-scheme: dark)" in style


@pytest.mark.parametrize("body", [*ERROR_PAGES, *LISTINGS])
def test_no_page_loads_or_links_anything_external(body: bytes) -> None:
    page = Page(body)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert page.urls  # the check below sees the links
    for url in page.urls:
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|//", url), url  # no scheme, no host
    assert "url(" not in page.style and "@import" not in page.style
