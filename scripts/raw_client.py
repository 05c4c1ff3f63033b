"""Fetch an http:// URL with a bare TCP socket and print the raw response bytes."""

import socket
import sys
from urllib.parse import quote, urlsplit

USAGE = "usage: python scripts/raw_client.py http://HOST[:PORT][/PATH][?QUERY]"


def main(argv: list[str]) -> int:
    """Send one GET request for argv[0] and copy the response to stdout."""
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
        # create_connection() resolves the name and does the TCP three-way handshake.
        with socket.create_connection((host, port), timeout=10) as sock:
            # sendall() writes every byte of the request into the connection.
            sock.sendall(request.encode("ascii"))
            # The answer arrives in pieces; recv() returns b"" once the server closes.
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:  # refused, unreachable, unknown host, timed out...
        print(f"raw_client: {host_header}: {exc}", file=sys.stderr)
        return 1

    # Print exactly what came over the wire: status line, headers, blank line, body.
    sys.stdout.buffer.write(b"".join(chunks))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
