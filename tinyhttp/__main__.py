"""The command line: flags into a Config, then serve, with one clear line for every mistake."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__, portable, tls
from .config import Config
from .listen import ListenError
from .urls import is_wildcard

if TYPE_CHECKING:  # imported for real in _start(), once h11 is known to be there
    from .server import Server
    from .workers import Supervisor

__all__ = ["main"]

# Exit status for a usage mistake, as argparse and most Unix tools use it.
USAGE = 2
# README's first set-up command: what to run when h11, the one dependency, is missing.
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/tinyhttp"


# The limits that have a flag each: Config field, type, and what it bounds.
LIMITS: tuple[tuple[str, type[int] | type[float], str], ...] = (
    ("max_connections", int, "connections at once"),
    ("max_head_bytes", int, "bytes in a request head"),
    ("max_header_count", int, "header fields in a request"),
    ("max_body_bytes", int, "bytes of a request body that is read and dropped"),
    ("head_timeout", float, "seconds for a whole request head to arrive"),
    ("idle_timeout", float, "seconds a kept-alive connection may wait for its next request"),
    ("send_timeout", float, "seconds a client may take no bytes of its answer"),
    ("drain_timeout", float, "seconds in-flight answers get to finish on Ctrl-C"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first; one line is easier to act on.
        self.exit(USAGE, f"tinyhttp: {message} (see tinyhttp --help)\n")


def _parser() -> argparse.ArgumentParser:
    defaults = Config()
    p = _Parser(prog="tinyhttp", description="Serve a folder over HTTP/1.1.")
    p.add_argument(
        "directory", nargs="*", help="folder to serve (default: ./www if it exists, else .)"
    )
    p.add_argument(
        "-d", "--directory", dest="directory_flag", metavar="DIR", help="same as DIRECTORY"
    )
    p.add_argument(
        "-b",
        "--bind",
        metavar="ADDRESS",
        help=f"address to listen on (default {defaults.bind}; 0.0.0.0 or :: for the network)",
    )
    p.add_argument(
        "-p", "--port", type=_port, help=f"TCP port (default {defaults.port}; 0 = any free port)"
    )
    p.add_argument("--unix", metavar="PATH", help="listen on a Unix domain socket instead of TCP")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate")
    p.add_argument(
        "--tls-key", metavar="FILE", help="the certificate's key (if not in the --tls-cert file)"
    )
    p.add_argument(
        "--tls-password-file", metavar="FILE", help="the key's password: this file's first line"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name on a loopback bind (repeatable)",
    )
    p.add_argument(
        "--dotfiles",
        action="store_true",
        help="serve files whose names start with a dot (never .git)",
    )
    p.add_argument(
        "--follow-symlinks", action="store_true", help="follow links that point out of the folder"
    )
    p.add_argument("--no-listing", action="store_true", help="404 for folders without an index")
    p.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="run N processes on the same port (0 = one per CPU; default 1)",
    )
    p.add_argument(
        "--max-age",
        type=_seconds,
        metavar="N",
        help="let caches keep files N seconds (default: no-cache, always revalidate)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="'NAME: VALUE'",
        help="add a header to every answer (repeatable)",
    )
    p.add_argument("--cors", action="store_true", help="let scripts on any origin read the files")
    p.add_argument(
        "--cors-origin", type=_origin, metavar="ORIGIN", help="let scripts on ORIGIN read the files"
    )
    p.add_argument(
        "--spa",
        action="store_true",
        help="answer unknown extension-less paths with /index.html (client-side routes)",
    )
    p.add_argument(
        "--no-echo",
        action="store_true",
        help="turn off /.well-known/tinyhttp/echo (on only for a loopback bind)",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="reload pages in the browser when a file under the folder changes",
    )
    p.add_argument(
        "--log-format",
        choices=("combined", "json"),
        default="combined",
        help="access log lines: Combined Log Format (default) or one JSON object each",
    )
    p.add_argument(
        "--trace", action="store_true", help="show each connection's socket-level life on stderr"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no access log")
    limits = p.add_argument_group("limits")
    for flag, kind, help_text in LIMITS:
        default = getattr(defaults, flag)
        limits.add_argument(
            "--" + flag.replace("_", "-"),
            type=_positive(kind),
            default=default,
            metavar="S" if kind is float else "N",  # seconds, as README writes them
            help=f"{help_text} (default {default:g})"
            if kind is float
            else f"{help_text} (default {default})",
        )
    p.add_argument("--version", action="version", version=f"tinyhttp {__version__}")
    return p


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"port must be a number from 0 to 65535, not {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 4:
        raise argparse.ArgumentTypeError(f"expected a number of processes, not {text!r}")
    return int(text) or os.cpu_count() or 1


def _seconds(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, not {text!r}")
    return int(text)


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name or any(not (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', not {text!r}")
    return name, _printable(value, name)


def _origin(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"an origin looks like https://app.example, not {text!r}")
    return _printable(text, "--cors-origin")


def _printable(value: str, what: str) -> str:
    # A header value must never carry CR/LF: h11 would refuse every answer.
    if not value.isascii() or any(c < " " or c == "\x7f" for c in value):
        raise argparse.ArgumentTypeError(f"the value of {what} must be printable ASCII")
    return value


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}") from None
        if not (value > 0 and math.isfinite(value)):  # inf would overflow select()
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
        return value

    return parse


def _root(args: argparse.Namespace) -> Path:
    """The folder to serve, or exit with one line that says what is wrong with it."""
    folders = [*args.directory, *([args.directory_flag] if args.directory_flag else [])]
    if len(folders) > 1:
        _fail(f"one folder at a time, not {len(folders)}: tinyhttp serves a single folder")
    given = folders[0] if folders else None
    if given is None:
        return Path("www") if Path("www").is_dir() else Path(".")
    path = Path(given)
    if not path.is_dir():
        if given.isdigit():  # the http.server habit: `python -m http.server 8080`
            _fail(f"{given!r} is not a folder; did you mean --port {given}?")
        _fail(f"{given!r} is not a folder; give the folder to serve, e.g. tinyhttp ./site")
    if not os.access(path, os.R_OK | os.X_OK):
        _fail(f"{given!r} is not readable by this user; choose another folder")
    return path


def _fail(message: str) -> NoReturn:
    print(f"tinyhttp: {message}", file=sys.stderr)
    raise SystemExit(USAGE)


def main(argv: list[str] | None = None) -> int:
    """Run tinyhttp with the given arguments; return the exit status."""
    config = _config(_parser().parse_args(argv))
    portable.raise_open_files_limit()
    if config.workers > 1 and not portable.CAN_FORK:
        _fail("--workers needs fork(), which this system lacks; run without it")
    server = _start(config)
    server.catch_signals()  # before the first line: a script may signal as soon as it sees it
    first = f"Serving {config.root} at {server.url} (Ctrl-C to stop)"
    if config.unix is None and is_wildcard(server.config.bind):  # the bound address: `0` too
        print(
            "tinyhttp: warning: listening on every interface: anyone on your network "
            "can read these files",
            file=sys.stderr,
        )
        first += "; also reachable from the network"
    print(first, flush=True)
    server.serve()
    print(_stopped(server.cut, config.drain_timeout), flush=True)
    return 0


def _start(config: Config) -> Server | Supervisor:
    """The server, or the supervisor of its --workers; for every mistake, one line."""
    try:
        from .server import Server  # the loop, and with it h11, the one dependency
        from .workers import Supervisor
    except ModuleNotFoundError as missing:
        if missing.name != "h11":
            raise
        _fail(f"h11 is not installed; from the repository root run: {INSTALL}")
    try:
        context = None
        if config.tls_cert is not None:
            context = tls.server_context(config.tls_cert, config.tls_key, config.tls_password_file)
        if config.workers > 1:
            return Supervisor(config, config.workers, context)
        return Server(config, tls=context)
    except (ListenError, tls.TLSConfigError) as error:
        _fail(str(error))


def _config(args: argparse.Namespace) -> Config:
    """The flags as a Config."""
    _refuse_contradictions(args)
    defaults = Config()
    return Config(
        root=_root(args),
        bind=defaults.bind if args.bind is None else args.bind,
        port=defaults.port if args.port is None else args.port,
        unix=args.unix,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_password_file=args.tls_password_file,
        quiet=args.quiet,
        trace=args.trace,
        log_json=args.log_format == "json",
        dotfiles=args.dotfiles,
        follow_symlinks=args.follow_symlinks,
        allow_hosts=tuple(args.allow_host),
        listing=not args.no_listing,
        max_age=args.max_age,
        extra_headers=tuple(args.header),
        cors_origin=args.cors_origin or ("*" if args.cors else None),
        spa=args.spa,
        echo=not args.no_echo,
        reload=args.reload,
        workers=args.workers,
        **{name: getattr(args, name) for name, _, _ in LIMITS},
    )


def _refuse_contradictions(args: argparse.Namespace) -> None:
    """Flags that cannot go together: one line and exit 2, rather than one silently ignored."""
    if (args.tls_key or args.tls_password_file) and not args.tls_cert:
        _fail("--tls-key and --tls-password-file go with --tls-cert FILE")
    if args.unix is not None and (args.port is not None or args.bind is not None):
        flag = "--port" if args.port is not None else "--bind"
        _fail(f"--unix listens on a socket file, not an address: drop {flag} or --unix")


def _stopped(cut: int, drain: float) -> str:
    """The last line: `Stopped.`, and what the drain deadline cost if it cut answers."""
    if not cut:
        return "Stopped."
    answers = "answer" if cut == 1 else "answers"
    return f"Stopped; {cut} {answers} cut after the {drain:g} s drain"


if __name__ == "__main__":
    sys.exit(main())
