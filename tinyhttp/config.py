"""Every knob tinyhttp has, with its default and why that default."""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOOPBACK_HOSTS", "Config"]

# The Host names a loopback-bound server answers to: a page on another site can point its
# own name at 127.0.0.1 (DNS rebinding), but it cannot make the browser send these names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Config:
    """What to serve, where, and within which limits."""

    root: Path = Path(".")
    bind: str = "127.0.0.1"
    port: int = 8000
    unix: str | None = None
    # HTTPS: a PEM certificate (chain), its key if not in the same file, and a file whose
    # first line is the key's password (the names of CPython 3.14's http.server flags).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_password_file: str | None = None

    # --- output ----------------------------------------------------------------------------
    quiet: bool = False
    trace: bool = False
    log_json: bool = False  # --log-format json

    # --- what may be served ----------------------------------------------------------------
    dotfiles: bool = False  # .env and .htpasswd are secrets more often than content
    follow_symlinks: bool = False  # a link out of the root would otherwise leak files
    allow_hosts: tuple[str, ...] = ()  # extra Host names accepted on a loopback bind
    index_files: tuple[str, ...] = ("index.html", "index.htm")
    listing: bool = True  # a folder without an index shows its files, as a dev server should

    # --- what answers carry ----------------------------------------------------------------
    # None -> `no-cache`: browsers revalidate, so an edit shows on the next reload.
    max_age: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()  # --header 'Name: value'
    cors_origin: str | None = None  # --cors is "*"; never sent with credentials
    spa: bool = False  # unknown extension-less paths get /index.html (client-side routes)
    # /.well-known/tinyhttp/echo shows a request's head; only ever on a loopback bind.
    echo: bool = True
    # --reload: HTML pages get a script that reloads them when a file under the root changes.
    reload: bool = False

    # --- limits ----------------------------------------------------------------------------
    # Request head: node.js 16 KiB, nginx 8 KiB + 4x8 KiB buffers, tomcat 8 KiB -> 16 KiB.
    max_head_bytes: int = 16 * 1024
    # Apache's LimitRequestFields default; real browsers send fewer than 30.
    max_header_count: int = 100
    # Request target: nginx answers 414 past its 8 KiB line buffers, Apache's
    # LimitRequestLine is 8190. Refused before the path is decoded or touches the disk.
    max_target_bytes: int = 8 * 1024
    # Path segments: each one costs an lstat() when the real path is resolved, and no site
    # nests folders this deep.
    max_segments: int = 128
    # Absolute, from the first byte: a byte a second must not keep a slowloris alive.
    head_timeout: float = 10.0
    # Keep-alive idle: browsers reopen cheaply; nginx's 75 s holds sockets for nothing.
    idle_timeout: float = 5.0
    # A client that takes no bytes this long is gone or hostile (slow read).
    send_timeout: float = 30.0
    # Bodies on GET are read and dropped; past this the connection is not worth it.
    max_body_bytes: int = 1024 * 1024
    # Lingering close (RFC 9112 §9.6): how long and how much to drain before closing.
    linger_seconds: float = 2.0
    linger_bytes: int = 1024 * 1024
    # nginx's worker_connections default; tinyhttp raises its soft open-files limit to the
    # hard one at start, since a connection may hold files open besides its socket.
    max_connections: int = 1024
    # At the connection limit, a connection may give its place to a newcomer once it has had
    # this long to send a whole request (a fresh one may have a request waiting unread; one
    # that has sent nothing or half a head after many round trips is slow or hostile).
    evict_after: float = 0.25
    # One process is plenty for a laptop; --workers N runs N loops on one port.
    workers: int = 1
    # Ctrl-C lets in-flight responses finish for this long.
    drain_timeout: float = 5.0
    # An event stream that has said nothing this long sends a comment line: the WHATWG HTML
    # standard suggests one "every 15 seconds or so" so that proxies do not drop it.
    heartbeat_seconds: float = 15.0

    # --- speed -----------------------------------------------------------------------------
    # Files up to this size are read and sent with their head in one send().
    small_file_bytes: int = 64 * 1024
    # Hot small files kept in memory with their headers (re-checked by stat() on every hit).
    cache_bytes: int = 32 * 1024 * 1024
    # Files changed this recently are not cached: timestamps tick coarsely (tests use 0).
    cache_settle_seconds: float = 2.0

    # --- platform fallbacks, forced on so the tests run them on Linux too ------------------
    use_sendfile: bool = True  # False: read() + send(), as where os.sendfile is missing
    use_reuse_port: bool = True  # False: --workers share one listening socket, as on macOS

    @functools.cached_property
    def loopback(self) -> bool:
        """Whether only this machine can reach the server: a loopback address or a Unix socket."""
        if self.unix is not None:
            return True
        try:
            return ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            return self.bind == "localhost"  # the server replaces names by what it bound

    @functools.cached_property
    def host_names(self) -> frozenset[str]:
        """The Host names, lower-case and without a port, that a loopback bind answers."""
        return frozenset((*LOOPBACK_HOSTS, *(name.lower() for name in self.allow_hosts)))

    def __post_init__(self) -> None:
        # Containment checks compare real paths, so the root must be one too.
        object.__setattr__(self, "root", Path(os.path.realpath(self.root)))
