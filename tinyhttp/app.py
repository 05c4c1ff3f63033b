"""What the server answers to one request: a plain Request in, a Reply out, no I/O but files.

The connection calls `App.respond()` once per request that passed its checks; this is where the
features meet: the Host check, the methods, the built-in pages, the files, and what the flags
add to every answer.
"""

from __future__ import annotations

from collections.abc import Callable

from . import checks, echo, features, reload, static
from .cache import FileCache
from .config import Config
from .message import Refusal, Reply, Request, error_reply

__all__ = ["App"]


class App:
    """The site a server serves: its configuration and its cache of hot small files."""

    # Host values found good, remembered: browsers send the same one with every request.
    KNOWN_HOSTS = 64

    def __init__(
        self,
        config: Config,
        cache: FileCache | None = None,
        watcher: reload.Watcher | None = None,
        streams: Callable[[], int] = lambda: 0,
    ) -> None:
        self.config = config
        self.cache = cache or FileCache(config.cache_bytes, config.cache_settle_seconds)
        self.watcher = watcher  # --reload: told which files browsers load
        self.streams = streams  # --reload: how many event streams are open now
        self._good_hosts: set[str] = set()
        self._decorated = bool(config.extra_headers) or config.cors_origin is not None

    def respond(self, request: Request) -> Reply:
        """The whole answer to one request; HEAD gets GET's headers and no body."""
        try:
            reply = self._route(request)
        except Refusal as refusal:
            reply = error_reply(refusal.status, refusal.sentence)
        if reply.status == 404 and request.method in ("GET", "HEAD"):
            reply = features.custom_404(self.config) or reply
        if self.config.reload:
            reply = reload.page_reply(request, reply)  # HTML gets the script
        if self._decorated:
            features.decorate(reply, self.config)
        if request.method == "HEAD":
            reply.close()  # HEAD repeats GET's headers, Content-Length included, but no body
        return reply

    def _route(self, request: Request) -> Reply:
        self._check_host(request)
        if request.method not in ("GET", "HEAD"):
            if request.method == "OPTIONS" and request.target != "*":
                static.parse_target(request.target)  # `*` is legal for OPTIONS only
            return features.method_reply(request, self.config)
        path, query = static.parse_target(request.target)
        if path == echo.PATH and echo.enabled(self.config):
            return echo.echo_reply(request)
        if self.config.reload:
            return self._reloading(request, path, query)
        return self._file(request, path, query)

    def _reloading(self, request: Request, path: str, query: str) -> Reply:
        """--reload: the event stream, or a file whose loading the watcher hears of; an HTML
        page is made from the plain file, never a range or a compressed copy of it."""
        if path == reload.PATH:
            return self._stream(request)
        if self.watcher is not None:
            index = self.config.index_files[0]
            self.watcher.served(reload.served_path(str(self.config.root), path, index))
        reply = self._file(request, path, query)
        if reload.wants_plain(reply, path):
            reply.close()
            reply = self._file(reload.plain(request), path, query)
        return reply

    def _stream(self, request: Request) -> Reply:
        # Its client says nothing after its request (any byte ends the stream), so a
        # request with a body cannot be one.
        if checks.has_body(request):
            raise Refusal(400, "An event stream is asked for without a body.")
        # A stream is never closed to make room for a newcomer, so streams without a cap
        # could hold every place and shut everyone else out: they get half the places,
        # rounded down (with one place, none: the page could never load again).
        if self.streams() >= self.config.max_connections // 2:
            raise Refusal(503, "Too many live-reload streams are open; close a few tabs.")
        return reload.stream_reply()

    def _file(self, request: Request, path: str, query: str) -> Reply:
        """static.py's answer; with --spa, a browser's route that names no file gets the
        app's /index.html."""
        try:
            return static.serve(request, path, query, self.config, self.cache)
        except Refusal as refusal:
            if refusal.status != 404 or not features.wants_app_shell(request, path, self.config):
                raise
        shell = static.serve(request, "/index.html", "", self.config, self.cache)
        return features.app_shell(shell)

    def _check_host(self, request: Request) -> None:
        """The Host check, skipped for a Host value already found good (an origin-form
        target leaves the Host header the only thing that decides)."""
        host = request.headers.get("host", "")
        origin_form = request.target.startswith("/")
        if origin_form and host in self._good_hosts:
            return
        refusal = checks.host_refusal(request, self.config)
        if refusal is not None:
            raise refusal
        if origin_form and len(self._good_hosts) < self.KNOWN_HOSTS:
            self._good_hosts.add(host)
