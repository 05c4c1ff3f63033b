"""The pages tinyhttp writes itself: error pages (and, through listing.py, folder listings)."""

from __future__ import annotations

__all__ = ["error_page"]


def error_page(status: int, phrase: str, sentence: str) -> bytes:
    """A small HTML page with the status and one sentence (which must be safe HTML)."""
    title = f"{status} {phrase}"
    return (
        f'<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>{title}</title>\n'
        f"<h1>{title}</h1>\n<p>{sentence}</p>\n</html>\n"
    ).encode()
