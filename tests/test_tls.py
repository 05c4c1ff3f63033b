"""tinyhttp.tls on its own: the context's one-line errors, and a TLSStream on the server end of
a real TCP connection on 127.0.0.1, driven by a small select() loop like the server's.

The certificates come from trustme: a throwaway CA, and a server certificate for localhost
and 127.0.0.1. Clients are Python's ssl (an SSLSocket in a thread, or an SSLObject driven
step by step in the test's own thread), `openssl s_client`, and raw bytes. Every socket call
has a timeout and every wait is a select() against a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import random
import select
import shutil
import socket
import ssl
import subprocess
import termios
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tinyhttp.log import AccessLog, Trace
from tinyhttp.tls import (
    BIO_BYTES,
    RECORD_BYTES,
    SEND_CHUNK,
    NotTLS,
    TLSConfigError,
    TLSStream,
    server_context,
)

TIMEOUT = 5.0  # every socket call and every wait gives up after this long
RECV = 64 * 1024  # what Connection asks recv() for
PASSWORD = b"correct horse battery staple"
# What recv() may return beyond `size`: the rest of one record (RFC 8446 §5.2).
RECORD_SLACK = RECORD_BYTES + 256


# --- certificates and keys -----------------------------------------------------------------


@dataclass
class PKI:
    ca: Path  # the CA certificate, for clients to trust
    cert: Path  # the server certificate
    key: Path  # its key
    combined: Path  # key and certificate in one file
    encrypted: Path  # the key, encrypted with PASSWORD (PKCS#8)
    encrypted_legacy: Path  # the key, encrypted the older way (Proc-Type: 4,ENCRYPTED)
    password: Path  # PASSWORD on its first line, then another line
    wrong_password: Path
    other_key: Path  # a key that belongs to another certificate
    folder: Path


def _encrypted(key_pem: bytes, format: Any) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    algorithm = serialization.BestAvailableEncryption(PASSWORD)
    return bytes(key.private_bytes(serialization.Encoding.PEM, format, algorithm))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    key_pem = leaf.private_key_pem.bytes()
    files = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "key": key_pem,
        "combined": leaf.private_key_and_cert_chain_pem.bytes(),
        "encrypted": _encrypted(key_pem, serialization.PrivateFormat.PKCS8),
        "encrypted_legacy": _encrypted(key_pem, serialization.PrivateFormat.TraditionalOpenSSL),
        "password": PASSWORD + b"\r\nthe second line is not read\n",
        "wrong_password": b"Tr0ub4dor&3\n",
        "other_key": ca.issue_cert("localhost").private_key_pem.bytes(),
    }
    paths = {name: folder / f"{name}.pem" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    return PKI(folder=folder, **paths)


@pytest.fixture(scope="module")
def context(pki: PKI) -> ssl.SSLContext:
    return server_context(str(pki.cert), str(pki.key))


def client_context(pki: PKI, alpn: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if alpn:
        context.set_alpn_protocols(["http/1.1"])
    return context


# --- the context ---------------------------------------------------------------------------


def test_context_from_cert_and_key(context: ssl.SSLContext) -> None:
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_COMPRESSION


def test_context_key_inside_the_certificate_file(pki: PKI) -> None:
    assert isinstance(server_context(str(pki.combined)), ssl.SSLContext)


@pytest.mark.parametrize("key", ["encrypted", "encrypted_legacy"])
def test_context_encrypted_key_and_password_file(pki: PKI, key: str) -> None:
    context = server_context(str(pki.cert), str(getattr(pki, key)), str(pki.password))
    assert isinstance(context, ssl.SSLContext)


def test_context_password_file_with_a_plain_key_is_harmless(pki: PKI) -> None:
    assert isinstance(
        server_context(str(pki.cert), str(pki.key), str(pki.password)), ssl.SSLContext
    )


def _config_error(cert: Path, key: Path | None = None, password: Path | None = None) -> str:
    """The message of the TLSConfigError server_context() must raise; checks it is one line."""
    with pytest.raises(TLSConfigError) as caught:
        server_context(str(cert), key and str(key), password and str(password))
    message = str(caught.value)
    assert message and "\n" not in message and "Traceback" not in message
    assert caught.value.__cause__ is None  # nothing chained for a traceback to show
    return message


def test_error_missing_certificate(pki: PKI) -> None:
    missing = pki.folder / "nope.pem"
    message = _config_error(missing, pki.key)
    assert f"--tls-cert {missing}" in message and "No such file" in message


def test_error_certificate_is_a_folder(pki: PKI) -> None:
    message = _config_error(pki.folder, pki.key)
    assert f"--tls-cert {pki.folder}" in message and "directory" in message


def test_error_unreadable_file(pki: PKI, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    locked = tmp_path / "locked.pem"
    locked.write_bytes(pki.key.read_bytes())
    locked.chmod(0)
    message = _config_error(pki.cert, locked)
    assert f"--tls-key {locked}" in message and "Permission denied" in message


def test_error_certificate_not_pem(pki: PKI, tmp_path: Path) -> None:
    der = tmp_path / "cert.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(pki.ca.read_text()))
    message = _config_error(der, pki.key)
    assert f"--tls-cert {der}" in message and "openssl x509 -inform der" in message


def test_error_certificate_damaged(pki: PKI, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pem"
    damaged.write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    message = _config_error(damaged, pki.key)
    assert f"--tls-cert {damaged}" in message and "damaged" in message


def test_error_no_key_given_and_none_in_the_certificate_file(pki: PKI) -> None:
    message = _config_error(pki.cert)
    assert f"--tls-cert {pki.cert}" in message and "--tls-key" in message


def test_error_key_file_holds_no_key(pki: PKI) -> None:
    message = _config_error(pki.cert, pki.cert)  # the certificate given twice
    assert f"--tls-key {pki.cert}" in message and "no PEM private key" in message


def test_error_key_does_not_match(pki: PKI) -> None:
    message = _config_error(pki.cert, pki.other_key)
    assert f"--tls-key {pki.other_key}" in message and "does not match" in message


def test_error_encrypted_key_without_password(pki: PKI) -> None:
    message = _config_error(pki.cert, pki.encrypted)
    assert f"--tls-key {pki.encrypted}" in message and "--tls-password-file" in message


@pytest.mark.parametrize("key", ["encrypted", "encrypted_legacy"])
def test_error_wrong_password(pki: PKI, key: str) -> None:
    message = _config_error(pki.cert, getattr(pki, key), pki.wrong_password)
    assert f"--tls-password-file {pki.wrong_password}" in message and "password" in message


def test_error_missing_password_file(pki: PKI) -> None:
    missing = pki.folder / "no-password.txt"
    message = _config_error(pki.cert, pki.encrypted, missing)
    assert f"--tls-password-file {missing}" in message and "No such file" in message


def test_error_empty_password_line(pki: PKI, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\nsecret on the second line\n")
    message = _config_error(pki.cert, pki.encrypted, empty)
    assert f"--tls-password-file {empty}" in message and "first line is empty" in message


def test_error_password_too_long(pki: PKI, tmp_path: Path) -> None:
    long = tmp_path / "long.txt"
    long.write_bytes(b"x" * 5000)
    message = _config_error(pki.cert, pki.encrypted, long)
    assert f"--tls-password-file {long}" in message


def test_error_endless_file(pki: PKI) -> None:
    message = _config_error(Path("/dev/zero"), pki.key)
    assert "--tls-cert /dev/zero" in message


# --- a test loop: select() with a deadline, as the server's loop would ---------------------


class Deadline:
    def __init__(self, seconds: float = TIMEOUT) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the test's deadline passed")
        return left


def wait(stream: TLSStream, deadline: Deadline, write: bool = False) -> None:
    """Until the socket is readable (writable with `write`), pushing held ciphertext when
    the stream asks to, as the server's loop would."""
    writers = [stream] if write or stream.wants_write else []
    readers = [] if write else [stream]
    readable, writable, _ = select.select(readers, writers, [], deadline.left())
    if writable and stream.wants_write:
        with contextlib.suppress(BlockingIOError):
            stream.flush()
    if not readable and not writable:
        raise TimeoutError("nothing happened before the deadline")


def recv_some(stream: TLSStream, deadline: Deadline, size: int = RECV) -> bytes:
    """The next recv() that does not raise BlockingIOError; checks nothing stays decrypted."""
    while True:
        try:
            data = stream.recv(size)
        except BlockingIOError:
            wait(stream, deadline)
            continue
        assert stream._tls.pending() == 0  # nothing left inside OpenSSL, unseen by select()
        assert len(data) <= size + RECORD_SLACK
        return data


def recv_exactly(stream: TLSStream, count: int, deadline: Deadline) -> bytes:
    received = bytearray()
    while len(received) < count:
        data = recv_some(stream, deadline)
        assert data, f"EOF after {len(received)} of {count} bytes"
        received += data
    return bytes(received)


def send_all(stream: TLSStream, data: bytes, deadline: Deadline) -> int:
    """Send it all by the retry rule; returns how often the kernel took only part."""
    view, offset, partial = memoryview(data), 0, 0
    while offset < len(data):
        try:
            count = stream.send(view[offset:])
        except BlockingIOError:
            partial += stream.wants_write
            wait(stream, deadline, write=True)
            continue
        assert 0 < count <= SEND_CHUNK
        offset += count
    return partial


def recv_until_closed(stream: TLSStream, deadline: Deadline) -> bytes:
    received = bytearray()
    while data := recv_some(stream, deadline):
        received += data
    return bytes(received)


def ending(stream: TLSStream, deadline: Deadline) -> bytes | OSError:
    """How the stream ends: what it received before b"", or the OSError it raised."""
    try:
        return recv_until_closed(stream, deadline)
    except TimeoutError:  # an OSError too, but the test's own deadline
        raise
    except OSError as error:
        return error


class Background:
    """A client in a thread; join() re-raises what it raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result = work()
        except BaseException as error:
            self.error = error

    def join(self) -> Any:
        self.thread.join(TIMEOUT * 4)
        assert not self.thread.is_alive(), "the client hung"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(TIMEOUT)
        yield sock


@pytest.fixture
def accept(listener: socket.socket, context: ssl.SSLContext) -> Iterator[Callable[..., TLSStream]]:
    """accept() -> a TLSStream on the next connection, non-blocking like the server's."""
    streams: list[TLSStream] = []

    def accept(trace: Trace | None = None, sndbuf: int = 0) -> TLSStream:
        sock, _ = listener.accept()
        sock.setblocking(False)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        streams.append(TLSStream(sock, context, trace))
        return streams[-1]

    yield accept
    for stream in streams:
        stream.close()


def port_of(listener: socket.socket) -> int:
    return int(listener.getsockname()[1])


def connect(listener: socket.socket, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect(), so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port_of(listener)))
    return sock


def pattern(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- (a) a Python ssl client ---------------------------------------------------------------


def test_handshake_version_alpn_and_summary(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    def client() -> tuple[str | None, str | None, bytes]:
        with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as t:
            t.sendall(b"ping")
            return t.version(), t.selected_alpn_protocol(), t.recv(10)

    background = Background(client)
    stream, deadline = accept(), Deadline()
    assert stream.summary() == ""
    assert recv_exactly(stream, 4, deadline) == b"ping"
    assert stream.summary().startswith("TLSv1.3 TLS_")
    assert stream._tls.version() in ("TLSv1.2", "TLSv1.3")
    assert stream._tls.selected_alpn_protocol() == "http/1.1"
    assert send_all(stream, b"pong", deadline) == 0
    version, alpn, answer = background.join()
    assert (version, alpn, answer) == ("TLSv1.3", "http/1.1", b"pong")
    assert stream.fileno() == stream.sock.fileno()


def test_tls12_client(pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]) -> None:
    def client() -> str | None:
        context = client_context(pki)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            return tls.cipher()[0]  # type: ignore[index]

    background = Background(client)
    stream = accept()
    assert recv_exactly(stream, 5, Deadline()) == b"hello"
    cipher = background.join()
    assert stream.summary() == f"TLSv1.2 {cipher}"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA" in cipher)


def test_tls11_client_is_refused(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    context = client_context(pki)
    try:  # a client willing to speak TLS 1.1 only, if this OpenSSL still can
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated indeed: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client")

    def client() -> None:
        with pytest.raises(OSError):
            context.wrap_socket(connect(listener), server_hostname="localhost").close()

    background = Background(client)
    outcome = ending(accept(), Deadline())
    background.join()
    assert isinstance(outcome, ssl.SSLError), outcome


def _slow_client(pki: PKI, listener: socket.socket, upload: bytes, size: int) -> bytes:
    """Upload, then read `size` bytes in small pieces through a small window."""
    sock = connect(listener, rcvbuf=8192)
    with client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(upload)
        received = bytearray()
        while len(received) < size:
            piece = tls.recv(4096)
            assert piece, "EOF too soon"
            received += piece
        assert tls.recv(1) == b""  # then close_notify
        return bytes(received)


def test_megabytes_both_ways_with_partial_sends(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    upload, download = pattern(3 * 1024 * 1024 + 5, 1), pattern(4 * 1024 * 1024 + 7, 2)
    background = Background(lambda: _slow_client(pki, listener, upload, len(download)))
    stream, deadline = accept(sndbuf=16 * 1024), Deadline(TIMEOUT * 4)
    assert recv_exactly(stream, len(upload), deadline) == upload
    partial = send_all(stream, download, deadline)
    stream.shutdown(socket.SHUT_WR)
    assert background.join() == download
    assert partial > 0, "the kernel always took whole chunks: the retry rule went untested"
    assert stream.wire_sent > len(download) and stream.wire_received > len(upload)


def test_the_retry_rule(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    reading = threading.Event()

    def client() -> bytes:
        sock = connect(listener, rcvbuf=8192)
        with client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"go")
            assert reading.wait(TIMEOUT)
            received = bytearray()
            while piece := tls.recv(65536):
                received += piece
            return bytes(received)

    background = Background(client)
    stream, deadline = accept(sndbuf=8192), Deadline()
    assert recv_exactly(stream, 2, deadline) == b"go"
    data, sent = pattern(SEND_CHUNK * 3, 3), 0
    with pytest.raises(BlockingIOError):  # the client does not read: the kernel fills up
        while sent < len(data):
            sent += stream.send(data[sent:])
    assert stream.wants_write  # part of a chunk's ciphertext is held
    with pytest.raises(ValueError):  # a retry must carry at least the bytes of the first try
        stream.send(b"x")
    reading.set()
    counts = []
    # Each retry returns the plaintext of the records finished since the last one.
    while stream.wants_write or stream._done:
        try:
            counts.append(stream.send(data[sent:]))
            sent += counts[-1]
        except BlockingIOError:
            wait(stream, deadline, write=True)
    assert counts and all(count > 0 and count % RECORD_BYTES == 0 for count in counts)
    assert sent % RECORD_BYTES == 0 and sent <= len(data)
    stream.shutdown(socket.SHUT_WR)
    assert background.join() == data[:sent]


def test_send_encrypts_one_chunk_per_call(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    def client() -> int:
        with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as t:
            t.sendall(b"go")
            total = 0
            while piece := t.recv(65536):
                total += len(piece)
            return total

    background = Background(client)
    stream, deadline = accept(), Deadline()
    recv_exactly(stream, 2, deadline)
    data = bytes(SEND_CHUNK * 2 + 1)
    counts = []
    while sum(counts) < len(data):
        try:
            counts.append(stream.send(memoryview(data)[sum(counts) :]))
        except BlockingIOError:
            wait(stream, deadline, write=True)
    assert counts == [SEND_CHUNK, SEND_CHUNK, 1]
    stream.shutdown(socket.SHUT_WR)
    assert background.join() == len(data)


def test_sendmsg_sends_gathered_buffers_as_one(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    def client() -> bytes:
        with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as t:
            t.sendall(b"go")
            received = bytearray()
            while piece := t.recv(65536):
                received += piece
            return bytes(received)

    background = Background(client)
    stream, deadline = accept(), Deadline()
    recv_exactly(stream, 2, deadline)
    head, body = b"HTTP/1.1 200 OK\r\n\r\n", pattern(SEND_CHUNK, 4)
    items: list[bytes | memoryview] = [head, memoryview(body), b"tail"]
    counts = []
    while items:  # like the outbox: drop what was sent, retry the rest
        try:
            count = stream.sendmsg(items)
        except BlockingIOError:
            wait(stream, deadline, write=True)
            continue
        counts.append(count)
        while count:
            if len(items[0]) > count:
                items[0], count = memoryview(items[0])[count:], 0
            else:
                count -= len(items.pop(0))
    assert counts[0] == SEND_CHUNK  # one chunk per call, across the buffers' edges
    stream.shutdown(socket.SHUT_WR)
    assert background.join() == head + body + b"tail"


def test_eof_without_close_notify(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    seen = threading.Event()

    def client() -> None:
        with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as t:
            t.sendall(b"bye")
            # SSLSocket.shutdown() sends no close_notify (only unwrap() does): a bare FIN.
            t.shutdown(socket.SHUT_WR)
            # Closing now, with our session tickets unread, would send a reset instead.
            assert seen.wait(TIMEOUT)

    background = Background(client)
    stream, deadline = accept(), Deadline()
    assert recv_exactly(stream, 3, deadline) == b"bye"
    assert recv_some(stream, deadline) == b""
    assert not stream._peer_closed
    seen.set()
    background.join()


def test_shutdown_sends_close_notify(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    def client() -> bytes:
        with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as t:
            t.sendall(b"x")
            received = t.recv(100)
            assert t.recv(100) == b""  # a clean end: SSLSocket raises on an EOF without one
            t.unwrap()  # answer with ours; the server reads it as the end
            return received

    background = Background(client)
    stream, deadline = accept(), Deadline()
    recv_exactly(stream, 1, deadline)
    send_all(stream, b"last words", deadline)
    stream.shutdown(socket.SHUT_WR)
    assert recv_until_closed(stream, deadline) == b""
    assert background.join() == b"last words"


# --- an SSLObject client, driven step by step in this thread -------------------------------


class StepClient:
    """A TLS client whose every flight is sent exactly when the test says."""

    def __init__(self, context: ssl.SSLContext, listener: socket.socket, rcvbuf: int = 0) -> None:
        self.sock = connect(listener, rcvbuf)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def hello(self) -> bytes:
        """The ClientHello's bytes (not sent)."""
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def finish_handshake(self, stream: TLSStream, deadline: Deadline) -> bytes:
        """Send the hello, let the server answer, and return the client's Finished (not sent)."""
        hello = self.hello()
        self.sock.sendall(hello)
        wait_in_kernel(stream.sock, len(hello), deadline)
        with pytest.raises(BlockingIOError):
            stream.recv(RECV)  # reads the hello, sends ServerHello ... Finished
        while True:
            self.incoming.write(self.sock.recv(65536))
            try:
                self.tls.do_handshake()
                return self.outgoing.read()
            except ssl.SSLWantReadError:
                deadline.left()

    def handshake(self, stream: TLSStream, deadline: Deadline) -> None:
        """The whole handshake, its last flight read by the server on its own."""
        finished = self.finish_handshake(stream, deadline)
        self.sock.sendall(finished)
        wait_in_kernel(stream.sock, len(finished), deadline)
        with pytest.raises(BlockingIOError):
            stream.recv(RECV)  # the Finished: the handshake is done, with no plaintext yet
        assert stream.established

    def records(self, *messages: bytes) -> bytes:
        for message in messages:
            self.tls.write(message)
        return self.outgoing.read()

    def close(self) -> None:
        self.sock.close()


def wait_in_kernel(sock: socket.socket, count: int, deadline: Deadline) -> None:
    """Until `count` bytes wait in the socket's receive buffer (FIONREAD). select() returns
    at the first byte, so this polls, for the moment loopback takes to deliver the rest."""
    while True:
        select.select([sock], [], [], deadline.left())
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        if int.from_bytes(waiting, "little") >= count:
            return
        deadline.left()


@pytest.fixture
def step(pki: PKI, listener: socket.socket) -> Iterator[StepClient]:
    client = StepClient(client_context(pki), listener)
    yield client
    client.close()


def test_request_in_the_same_packet_as_the_finished(
    step: StepClient, accept: Callable[..., TLSStream]
) -> None:
    stream, deadline = accept(), Deadline()
    finished = step.finish_handshake(stream, deadline)
    flight = finished + step.records(b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n")
    step.sock.sendall(flight)
    wait_in_kernel(stream.sock, len(flight), deadline)
    # One recv() ends the handshake and decrypts all three records behind it.
    assert stream.recv(RECV) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert stream.established and stream._tls.pending() == 0 and stream._in.pending == 0


def test_several_records_at_once_are_all_drained(
    step: StepClient, accept: Callable[..., TLSStream]
) -> None:
    stream, deadline = accept(), Deadline()
    step.handshake(stream, deadline)
    messages = [pattern(size, size) for size in (100, 3000, 5000, 1, 7000)]
    flight = step.records(*messages)
    assert len(flight) <= BIO_BYTES  # what one recv() takes from the kernel
    step.sock.sendall(flight)
    wait_in_kernel(stream.sock, len(flight), deadline)
    assert stream.recv(RECV) == b"".join(messages)  # all five records, in one call
    assert stream._tls.pending() == 0 and stream._in.pending == 0
    with pytest.raises(BlockingIOError):
        stream.recv(RECV)


def test_what_one_recv_leaves_stays_in_the_kernel(
    step: StepClient, accept: Callable[..., TLSStream]
) -> None:
    # More than one recv() takes: what it leaves must be in the kernel, where select() sees
    # it, and never decrypted and waiting inside OpenSSL or the incoming BIO.
    stream, deadline = accept(), Deadline()
    step.handshake(stream, deadline)
    messages = [pattern(RECORD_BYTES, n) for n in range(4)]
    step.sock.sendall(step.records(*messages))
    received = bytearray()
    while len(received) < 4 * RECORD_BYTES:
        wait(stream, deadline)  # readable: the kernel holds the rest
        with contextlib.suppress(BlockingIOError):  # (the rest of a record may still be coming)
            received += stream.recv(RECV)
        assert stream._tls.pending() == 0 and stream._in.pending == 0
    assert received == b"".join(messages)


def test_small_recv_sizes_leave_nothing_hidden(
    step: StepClient, accept: Callable[..., TLSStream]
) -> None:
    stream, deadline = accept(), Deadline()
    step.handshake(stream, deadline)
    messages = [pattern(3000, n) for n in range(5)]
    step.sock.sendall(step.records(*messages))
    received = bytearray()
    while len(received) < 15000:
        received += recv_some(stream, deadline, size=100)  # checks pending() after each
    assert received == b"".join(messages)


def test_partial_record_waits(step: StepClient, accept: Callable[..., TLSStream]) -> None:
    stream, deadline = accept(), Deadline()
    step.handshake(stream, deadline)
    record = step.records(b"a whole request")
    step.sock.sendall(record[:10])
    wait_in_kernel(stream.sock, 10, deadline)
    with pytest.raises(BlockingIOError):
        stream.recv(RECV)  # 10 bytes of a record: nothing to give yet
    step.sock.sendall(record[10:])
    assert recv_some(stream, deadline) == b"a whole request"


def test_client_that_sends_nothing_blocks(
    listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    with connect(listener):
        stream = accept()
        for _ in range(3):
            with pytest.raises(BlockingIOError):
                stream.recv(RECV)
        assert stream.summary() == ""


def test_half_a_client_hello_blocks(step: StepClient, accept: Callable[..., TLSStream]) -> None:
    stream, deadline = accept(), Deadline()
    hello = step.hello()
    step.sock.sendall(hello[:50])
    wait_in_kernel(stream.sock, 50, deadline)
    with pytest.raises(BlockingIOError):
        stream.recv(RECV)
    step.sock.shutdown(socket.SHUT_WR)  # and then it leaves
    assert recv_some(stream, deadline) == b""


def test_held_handshake_flight_goes_out_by_flush(listener: socket.socket, tmp_path: Path) -> None:
    # A long certificate chain, a tiny send buffer and a client with a tiny window: the
    # kernel cannot take the server's first flight at once, and the rest must wait for a
    # writable event and flush(), which is what wants_write asks for.
    root = ca = trustme.CA(path_length=20)
    for _ in range(12):
        ca = ca.create_child_ca()
    combined = tmp_path / "long-chain.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(combined))
    trusting = ssl.create_default_context()
    root.configure_trust(trusting)
    client = StepClient(trusting, listener, rcvbuf=1)
    sock, _ = listener.accept()
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's minimum
    stream, deadline = TLSStream(sock, server_context(str(combined))), Deadline()
    try:
        hello = client.hello()
        client.sock.sendall(hello)
        wait_in_kernel(sock, len(hello), deadline)
        with pytest.raises(BlockingIOError):
            stream.recv(RECV)
        assert stream.wants_write, "the whole flight fit: this test needs a longer chain"
        while True:  # the client reads as it can, the server pushes when it may
            writers = [stream] if stream.wants_write else []
            readable, writable, _ = select.select([client.sock], writers, [], deadline.left())
            if writable:
                with contextlib.suppress(BlockingIOError):
                    stream.flush()
            if readable:
                client.incoming.write(client.sock.recv(65536))
                with contextlib.suppress(ssl.SSLWantReadError):
                    client.tls.do_handshake()
                    break
        client.sock.sendall(client.outgoing.read() + client.records(b"hello"))
        assert recv_some(stream, deadline) == b"hello"
    finally:
        stream.close()
        client.close()


# --- (b) openssl s_client ------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_s_client_with_a_key_update(
    pki: PKI, listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port_of(listener)}"]
    command += ["-alpn", "http/1.1", "-tls1_3", "-CAfile", str(pki.ca), "-brief"]
    command += ["-verify_hostname", "localhost", "-verify_return_error"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout and process.stderr
    try:
        stream, deadline = accept(), Deadline()
        while not stream.established:
            wait(stream, deadline)
            with contextlib.suppress(BlockingIOError):
                assert stream.recv(RECV) == b"", "plaintext before the handshake ended"
        assert stream._tls.selected_alpn_protocol() == "http/1.1"
        # "K" asks s_client to send a KeyUpdate that requests ours (RFC 8446 §4.6.3): a
        # record with no plaintext in it, and OpenSSL's answer goes out with our next send.
        before = stream.wire_received
        process.stdin.write(b"K\n")
        process.stdin.flush()
        while stream.wire_received == before:
            wait(stream, deadline)
            with pytest.raises(BlockingIOError):
                stream.recv(RECV)
        request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        process.stdin.write(request)
        process.stdin.flush()
        assert recv_exactly(stream, len(request), deadline) == request
        send_all(stream, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", deadline)
        stream.shutdown(socket.SHUT_WR)
        assert recv_until_closed(stream, deadline) == b""
        process.wait(TIMEOUT)  # it leaves at our close_notify, its stdin still open
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        process.stdout.close()
        process.stderr.close()
    assert out.endswith(b"\r\n\r\nhello"), out
    assert b"Protocol version: TLSv1.3" in err and b"Verification: OK" in err, err
    assert b"KEYUPDATE" in err, err


# --- (c) plain HTTP to the TLS port --------------------------------------------------------


def test_plain_http_gets_a_400_that_says_https(
    listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    with connect(listener) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        stream = accept()
        with pytest.raises(NotTLS) as caught:
            recv_some(stream, Deadline())
        assert isinstance(caught.value, OSError)
        stream.close()  # what the server does on an OSError
        answer = bytearray()
        while piece := client.recv(4096):
            answer += piece
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    for name in (b"Date", b"Server", b"X-Content-Type-Options"):
        assert b"\r\n" + name + b": " in head
    assert b"\r\nContent-Type: text/html" in head and b"\r\nConnection: close" in head
    assert f"\r\nContent-Length: {len(body)}".encode() in head
    assert b"https://" in body


# --- (d) garbage ---------------------------------------------------------------------------


def _outcome(listener: socket.socket, accept: Callable[..., TLSStream], data: bytes) -> object:
    """What recv() ends with when a client sends `data` and stops: b"" or an exception."""
    with connect(listener) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        return ending(accept(), Deadline())


def test_garbage_in_a_handshake_record(
    listener: socket.socket, accept: Callable[..., TLSStream]
) -> None:
    outcome = _outcome(listener, accept, b"\x16\x03\x01\x00\x10" + b"\xff" * 16)
    assert isinstance(outcome, ssl.SSLError), outcome


@pytest.mark.parametrize("seed", range(12))
def test_random_garbage_is_an_oserror_or_an_end(
    listener: socket.socket, accept: Callable[..., TLSStream], seed: int
) -> None:
    garbage = bytearray(pattern(random.Random(seed).randrange(1, 3000), seed))
    if seed % 2:
        garbage[0] = 0x16  # half of them look like a handshake record
    outcome = _outcome(listener, accept, bytes(garbage))
    assert outcome == b"" or isinstance(outcome, OSError), outcome
    if not seed % 2 and garbage[0] != 0x16:
        assert isinstance(outcome, NotTLS)


def test_garbage_after_the_handshake(step: StepClient, accept: Callable[..., TLSStream]) -> None:
    stream, deadline = accept(), Deadline()
    step.handshake(stream, deadline)
    record = bytearray(step.records(b"an honest request"))
    record[-1] ^= 1  # one bit flipped: the record's tag no longer matches
    step.sock.sendall(record)
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        recv_some(stream, deadline)
    # OpenSSL's alert (RFC 8446 §6.2) went back, after the session tickets: the client
    # learns why.
    while True:
        step.incoming.write(step.sock.recv(65536))
        try:
            step.tls.read(1024)
        except ssl.SSLWantReadError:
            deadline.left()
            continue
        except ssl.SSLError as error:
            assert "ALERT_BAD_RECORD_MAC" in str(error)
            break


# --- --trace -------------------------------------------------------------------------------


def test_trace_tells_the_handshake_and_each_record(
    step: StepClient, accept: Callable[..., TLSStream]
) -> None:
    log = AccessLog(io.StringIO())
    stream, deadline = accept(trace=Trace(7, log)), Deadline()
    step.handshake(stream, deadline)
    record = step.records(b"x" * 1024)
    step.sock.sendall(record)
    assert recv_some(stream, deadline) == b"x" * 1024
    send_all(stream, b"y" * 1024, deadline)
    stream.shutdown(socket.SHUT_WR)
    log.flush()
    lines = log.stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("[#7] tls: recv ")
    assert " -> 0 plaintext (handshake); " in lines[0]  # the hello in, our first flight out
    assert lines[1].startswith("[#7] tls: recv ")  # the client's Finished
    assert " -> 0 plaintext (handshake); " in lines[1]  # and out go the session tickets
    assert lines[2].startswith("[#7] tls: handshake done: TLSv1.3 TLS_")
    assert lines[2].endswith(", ALPN http/1.1")
    assert lines[3:] == [
        "[#7] tls: recv 1,046 wire bytes -> 1,024 plaintext",  # 22 bytes more per record
        "[#7] tls: send 1,024 plaintext -> 1,046 wire bytes",
        "[#7] tls: close_notify sent",
    ]
