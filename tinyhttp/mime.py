"""The web's media types, built in so every machine answers the same."""

from __future__ import annotations

__all__ = ["content_type"]

# Our own table, not the OS registry (`mimetypes` reads /etc/mime.types, which differs
# between machines and once mapped .js to text/plain on Windows).
_TYPES = {
    # text: a browser must know the charset, or it guesses (and guesses wrong)
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "text/javascript",  # RFC 9239: text/javascript, also for modules
    "mjs": "text/javascript",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "xml": "text/xml",
    "json": "application/json",
    "map": "application/json",
    "webmanifest": "application/manifest+json",
    "svg": "image/svg+xml",
    # images
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",
    "bmp": "image/bmp",
    # fonts
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    # audio and video
    "mp4": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    # everything else a site hands out
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
}

# Types that are text without saying so in their top-level name.
_TEXT_LIKE = {"application/json", "application/manifest+json", "image/svg+xml"}

UNKNOWN = "application/octet-stream"


def content_type(name: str) -> str:
    """The Content-Type for a file name: `text/css; charset=utf-8`, or octet-stream."""
    _, dot, extension = name.rpartition(".")
    media_type = _TYPES.get(extension.lower(), UNKNOWN) if dot else UNKNOWN
    if media_type.startswith("text/") or media_type in _TEXT_LIKE:
        return media_type + "; charset=utf-8"
    return media_type
