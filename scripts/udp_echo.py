"""UDP echo, server and client: with datagrams, you are the reliability layer now.

    python scripts/udp_echo.py server --port 9000 --drop 0.3 --duplicate 0.3 --seed 1
    python scripts/udp_echo.py client --port 9000 --count 10

TCP (SOCK_STREAM) hands the program a byte stream in which nothing is lost, repeated or out of
order. UDP (SOCK_DGRAM) hands it datagrams: each one arrives whole or not at all, maybe twice,
maybe after a later one, and nobody says which. There is no connect-accept handshake either:
the server just bind()s and recvfrom()s whatever anyone sends it.

So the client does by hand what TCP does in the kernel, in its simplest form (stop-and-wait):
it numbers each message, waits for the echo of that number, sends again when the wait times
out (a bounded number of times), and throws away echoes it has already seen. The server can
lose and repeat echoes on purpose, so you can watch each of those rules earn its place.
Loopback only: nothing here is meant to leave the machine.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
MAX_DATAGRAM = 65535  # the largest UDP payload recvfrom() can ever return


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:  # Ctrl-C, most likely in recvfrom(): the socket is closed
        print("Stopped.", flush=True)
        return 0
    except OSError as error:  # e.g. no loopback network at all
        print(f"udp_echo: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="UDP echo over loopback, with losses.")
    roles = parser.add_subparsers(required=True, metavar="{server,client}")
    server = roles.add_parser("server", help="echo datagrams back, losing some on purpose")
    server.add_argument("--port", type=_port, default=9000, help="0 = any free port")
    server.add_argument("--drop", type=_chance, default=0.0, help="chance to lose an echo")
    server.add_argument("--duplicate", type=_chance, default=0.0, help="chance to echo twice")
    server.add_argument("--seed", type=int, help="make the losses repeatable")
    server.set_defaults(run=run_server)
    client = roles.add_parser("client", help="send numbered messages until each is echoed")
    client.add_argument("--port", type=_port, default=9000, help="the server's port")
    client.add_argument("--count", type=int, default=10, help="how many messages to send")
    client.add_argument("--timeout", type=float, default=0.2, help="seconds to wait for an echo")
    client.add_argument("--retries", type=int, default=8, help="resends before giving up")
    client.set_defaults(run=run_client)
    return parser


# --- the server ----------------------------------------------------------------------------


def run_server(args: argparse.Namespace) -> int:
    """Echo every datagram to its sender, except the ones chance drops or doubles."""
    chance = random.Random(args.seed)
    # The four choices: IPv4, datagrams, UDP (0 picks it), and the server role by bind()
    # alone -- no listen(), no accept(): there are no connections to accept.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, args.port))
        except OSError as error:
            print(f"udp_echo: port {args.port}: {error.strerror}; try --port 0", file=sys.stderr)
            return 2
        port = sock.getsockname()[1]
        print(f"Echoing UDP datagrams on {HOST} port {port} (Ctrl-C to stop)", flush=True)
        while True:  # until Ctrl-C
            # One recvfrom() is one whole datagram, and says who sent it.
            data, sender = sock.recvfrom(MAX_DATAGRAM)
            if chance.random() < args.drop:
                say(f"got {_show(data)}: dropped on purpose")
                continue  # to the client, a lost echo looks exactly like a lost message
            copies = 2 if chance.random() < args.duplicate else 1
            for _ in range(copies):
                sock.sendto(data, sender)  # one sendto() is one datagram, sent whole
            say(f"got {_show(data)}: echoed" + (" twice, on purpose" if copies == 2 else ""))


# --- the client: the reliability layer -----------------------------------------------------


def run_client(args: argparse.Namespace) -> int:
    """Send messages 1..count, each until its echo comes back; print each echo once, in order."""
    server = (HOST, args.port)
    retries = duplicates = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for number in range(1, args.count + 1):
            message = f"{number} message {number}".encode("ascii")
            for attempt in range(args.retries + 1):
                if attempt:
                    retries += 1
                    say(f"no echo of #{number} in {args.timeout} s: sending it again ({attempt})")
                sock.sendto(message, server)
                # Without a time limit on the wait, one lost echo would hang us forever.
                seen = _await_echo(sock, server, number, args.timeout)
                duplicates += seen.duplicates
                if seen.echoed:
                    say(f"echo #{number}: {message.decode()}")
                    break
            else:
                print(
                    f"udp_echo: gave up on #{number} after {args.retries} resends", file=sys.stderr
                )
                return 1
    say(
        f"all {args.count} echoed once, in order: {retries} resent, {duplicates} duplicates dropped"
    )
    return 0


@dataclass
class _Seen:
    """What one wait for an echo brought: the echo or not, and how many stale copies."""

    echoed: bool = False
    duplicates: int = 0


def _await_echo(sock: socket.socket, server: tuple[str, int], number: int, wait: float) -> _Seen:
    """Wait up to `wait` seconds for the echo of message `number`."""
    seen = _Seen()
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)  # stale copies arriving must not stretch the wait
        try:
            data, sender = sock.recvfrom(MAX_DATAGRAM)
        except TimeoutError:
            break  # lost, on the way there or back: the caller sends again
        got = _number(data)
        if sender != server or got is None or got > number:
            continue  # anyone may send a datagram to our port: only our echoes count
        if got == number:
            seen.echoed = True
            break
        # An echo we already have: the server doubled it, or the first copy came late, after
        # we had sent the message again. The numbers are how each message is kept only once.
        seen.duplicates += 1
        say(f"dropped a duplicate echo of #{got}")
    return seen


def _number(data: bytes) -> int | None:
    head = data.partition(b" ")[0]
    return int(head) if head.isdigit() and len(head) < 10 else None


# --- small helpers -------------------------------------------------------------------------


def _show(data: bytes) -> str:
    return repr(data[:60])


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, not {text!r}")
    return int(text)


def _chance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a chance from 0 to 1, not {text!r}")
    return value


def say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
