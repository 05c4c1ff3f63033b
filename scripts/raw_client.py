"""Fetch an http:// URL with a bare socket and print the raw response bytes.

python scripts/raw_client.py http://127.0.0.1:8000/
python scripts/raw_client.py 'http://[::1]:8000/'                  # IPv6: AF_INET6
python scripts/raw_client.py --unix /tmp/t.sock http://localhost/  # AF_UNIX: a file path
"""

import socket
import sys
from urllib.parse import quote, urlsplit

USAGE = "usage: python scripts/raw_client.py [--unix PATH] http://HOST[:PORT][/PATH][?QUERY]"
TIMEOUT = 10  # seconds any connect, send or recv may take


def main(argv: list[str]) -> int:
    """Send one GET request for the URL in argv and copy the response to stdout."""
    unix: str | None = None
    if len(argv) == 3 and argv[0] == "--unix":
        unix, argv = argv[1], argv[2:]  # the URL then only names the Host and the path
    try:
        url = urlsplit(argv[0]) if len(argv) == 1 else None
        port: int = (url.port or 80) if url else 0
    except ValueError:  # e.g. "http://host:99999/" or "http://[::1/"
        url = None
    host: str = (url.hostname or "") if url else ""
    if url is None or url.scheme != "http" or not host or not host.isascii():
        print(USAGE, file=sys.stderr)
        return 2
    # Keep the query string; percent-encode spaces and non-ASCII characters.
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    path: str = quote(target, safe="/?=&%:@!$'()*+,;~")
    # An IPv6 literal must keep its [brackets] in the Host header.
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # The request is plain text: a request line, header lines, then an empty line.
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        "User-Agent: raw_client.py\r\n"
        "Connection: close\r\n"
        "\r\n"
    )

    chunks: list[bytes] = []
    try:
        with connect(host, port, unix) as sock:
            # sendall() writes every byte of the request into the connection.
            sock.sendall(request.encode("ascii"))
            # The answer arrives in pieces; recv() returns b"" once the server closes.
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:  # refused, unreachable, unknown host, timed out...
        print(f"raw_client: {unix or host_header}: {exc}", file=sys.stderr)
        return 1

    # Print exactly what came over the wire: status line, headers, blank line, body.
    sys.stdout.buffer.write(b"".join(chunks))
    sys.stdout.buffer.flush()
    return 0


def connect(host: str, port: int, unix: str | None) -> socket.socket:
    """A connected stream socket: TCP to (host, port), or a Unix socket at the path unix."""
    if unix is None:
        # create_connection() resolves the name -- to an IPv4 or IPv6 address, so AF_INET or
        # AF_INET6 -- and does the TCP three-way handshake.
        return socket.create_connection((host, port), timeout=TIMEOUT)
    # AF_UNIX: the address is a path on this machine; no IP, no port, no handshake.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(unix)
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
