"""The seed's server: one client at a time, every call blocking. Run it and watch it stall.

    python scripts/blocking_server.py --port 8001
    curl http://127.0.0.1:8001/                   # answered at once

Now make it stall. In a second terminal open a connection and send nothing:

    nc 127.0.0.1 8001                             # or, without nc:
    python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 8001)); input()"

and run the curl again: it hangs. The server accepted the silent client and sits in recv()
waiting for its request; it will not call accept() again until that client sends a request,
hangs up, or times out. Type `GET / HTTP/1.0` and Enter twice into nc, and both answers come.

Try the same against tinyhttp (`tinyhttp --port 8002`): curl is answered at once, because
tinyhttp never blocks on one socket. Its loop asks select() which of *all* its sockets are
ready and calls recv() or accept() only on those (tinyhttp/server.py, Server.serve).
"""

from __future__ import annotations

import argparse
import socket
import sys

# Give up on a silent client after this long. The seed has no timeout at all; with one, a
# silent client stalls everybody for 30 s instead of forever -- still the whole server.
CLIENT_TIMEOUT = 30.0
MAX_HEAD = 16 * 1024  # stop reading a request head that never ends


def main(argv: list[str] | None = None) -> int:
    """Serve HTTP on 127.0.0.1, one client after another, until Ctrl-C (or N clients)."""
    parser = argparse.ArgumentParser(description="A one-client-at-a-time HTTP server.")
    parser.add_argument("--port", type=port_number, default=8001, help="0 = any free port")
    parser.add_argument("--max-clients", type=int, metavar="N", help="exit after N clients")
    args = parser.parse_args(argv)
    try:
        status = listen_and_serve(args.port, args.max_clients)
    except KeyboardInterrupt:  # Ctrl-C, most likely in accept() or recv(): the with-blocks
        status = 0  # have closed the sockets on the way out
    if status == 0:
        print("Stopped.", flush=True)
    return status


def listen_and_serve(port: int, max_clients: int | None) -> int:
    """bind(), listen(), then serve; 2 if the port cannot be had."""
    # The four choices: IPv4, a byte stream, TCP (0 picks it), and -- by bind() and
    # listen() below -- the server role.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError as error:
            print(f"blocking_server: port {port}: {error.strerror}; try --port 0", file=sys.stderr)
            return 2
        # While we are busy with one client, the kernel finishes the handshakes of the next
        # ones and queues them here: that is why a second curl connects, and then just waits.
        listener.listen()
        port = listener.getsockname()[1]
        print(f"Serving http://127.0.0.1:{port}/ one client at a time (Ctrl-C to stop)", flush=True)
        serve(listener, max_clients)
    return 0


def serve(listener: socket.socket, max_clients: int | None) -> None:
    """accept(), answer, close; again. Nothing else happens while one client is served."""
    number = 0
    while max_clients is None or number < max_clients:
        client, (host, port) = listener.accept()  # blocks until a client has connected
        number += 1
        with client:
            say(f"accept(): client {number} from {host}:{port}; recv() until its head ends")
            client.settimeout(CLIENT_TIMEOUT)
            try:
                head = read_head(client)
                if b"\r\n\r\n" not in head:
                    say(f"client {number} sent no whole request; close()")
                    continue
                answer = respond(number)
                client.sendall(answer)  # send() may take part; sendall() loops until all went
                say(f"sendall(): {len(answer)} bytes to client {number}; close()")
            except OSError as error:  # timed out, reset by the client, ...
                say(f"client {number}: {error}; close()")


def read_head(client: socket.socket) -> bytes:
    """Bytes until the empty line that ends a request head (or the client stops sending)."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
        chunk = client.recv(4096)  # blocks until bytes come: the whole server waits here
        if not chunk:
            break  # the client hung up
        head += chunk
    return head


def respond(number: int) -> bytes:
    """A tiny but complete HTTP/1.1 response; the connection closes after it."""
    payload = f"Hello from blocking_server.py, client {number}.\n".encode("ascii")
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii") + payload


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, not {text!r}")
    return int(text)


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
