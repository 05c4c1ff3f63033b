"""The pages tinyhttp writes itself: error pages, and the frame folder listings share with them."""

from __future__ import annotations

import html

__all__ = ["STYLE", "error_page", "page"]

# The demo site's palette, type and spacing (www/style.css), cut to what these pages use.
# Inline, because the site being served may have no style.css at all, and a page the server
# writes should fetch nothing: no stylesheet, font, image or script, from here or elsewhere.
# The colours are the site's, so body text and links keep WCAG 2.x contrast of 4.5:1 or more.
STYLE = """\
:root { color-scheme: light dark; --bg: #fbfaf7; --fg: #1f2328; --muted: #59616c;
  --accent: #0b5cb8; --soft: #f0eee8; --border: #dcd8cf; --card: #fff; }
@media (prefers-color-scheme: dark) { :root { --bg: #15181c; --fg: #e6e8eb; --muted: #a3abb5;
  --accent: #7cb7ff; --soft: #1f242a; --border: #353c45; --card: #1b1f24; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 1.0625rem/1.65 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.site { background: var(--card); border-bottom: 1px solid var(--border); }
.site p, main { max-width: 44rem; margin: 0 auto; padding: 0.6rem 1.25rem; }
main { padding-top: 2.25rem; }
.brand { color: var(--fg); font-weight: 700; text-decoration: none; }
.brand::before { content: "\\25B8\\A0"; color: var(--accent); }
h1 { font-size: clamp(1.6rem, 5vw, 2.2rem); line-height: 1.25; letter-spacing: -0.01em;
  margin: 0.2rem 0 1.25rem; overflow-wrap: anywhere; }
a { color: var(--accent); text-underline-offset: 0.15em; }"""


def page(title: str, main: str, style: str = "") -> bytes:
    """A whole UTF-8 HTML5 page in the site's look: a bar whose name links to the root, then
    `main`. `title` and `main` must be safe HTML; `style` is CSS for this kind of page only."""
    # The links to the root are absolute: an error page does not know how deep it is.
    lines = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{title}</title>",
        f"<style>\n{STYLE}\n{style}\n</style>",
        "</head>",
        "<body>",
        '<header class="site"><p><a class="brand" href="/">tinyhttp</a></p></header>',
        "<main>",
        main,
        "</main>",
        "</body>",
        "</html>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


_ERROR_STYLE = ".lead { font-size: 1.15rem; }"


def error_page(status: int, phrase: str, sentence: str) -> bytes:
    """A small HTML page with the status, one sentence (which must be safe HTML), and a way
    back to the root."""
    title = html.escape(f"{status} {phrase}")
    main = (
        f'<h1>{title}</h1>\n<p class="lead">{sentence}</p>\n'
        '<p><a href="/">Back to the front page</a></p>'
    )
    return page(title, main, _ERROR_STYLE)
