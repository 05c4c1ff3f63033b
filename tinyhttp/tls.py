"""HTTPS in the same loop: TLS between HTTP and TCP, as a stream that looks like a socket.

Theory of operation
-------------------
The server's loop watches plain non-blocking sockets, so TLS is not an ssl.SSLSocket here
but an ssl.SSLObject, OpenSSL's state machine with no socket of its own, between two
ssl.MemoryBIOs (CPython docs, "Memory BIO Support"):

    kernel --recv--> incoming BIO --SSLObject.read()--> plaintext for h11
    kernel <--send-- outgoing BIO <--SSLObject.write()- plaintext from the outbox

TLSStream owns the SSLObject and both BIOs; the server still owns the socket (it registers,
unregisters and closes it). The stream moves every byte between the kernel and the BIOs
itself, so each byte on the wire is counted, and --trace can show what TLS adds.

The handshake (RFC 8446 §2; RFC 5246 §7.3 for TLS 1.2) happens inside recv(): each ClientHello
byte goes into the incoming BIO, do_handshake() runs until it needs more, and what it wrote
(ServerHello ... Finished) goes to the kernel. Until it ends, recv() raises BlockingIOError
like an empty socket, so the connection's head deadline also bounds a slow handshake.

send() keeps a plain socket's promise: it returns n only once the kernel has taken the
ciphertext of those n plaintext bytes, counting whole records. Records the kernel has not
taken whole stay in the stream; the caller retries with data that starts with their bytes
(OpenSSL's SSL_write retry rule, SSL_write(3)), and each call returns the plaintext of the
records finished by then, or raises BlockingIOError if none was. So a slow reader shows
progress record by record. At most one chunk of plaintext (SEND_CHUNK) is encrypted per call.

recv() decrypts everything that has arrived before it returns: plaintext left inside OpenSSL
(SSLObject.pending()) or whole records left in the incoming BIO would be invisible to
select(), which watches only the kernel's buffer, and a request could wait there forever.

Two more things a plain socket never does. Ciphertext OpenSSL writes on its own (a handshake
flight, an alert) may not all fit in the kernel: `wants_write` then asks the loop to watch for
writable and call flush(). And a client that opens with anything but a TLS handshake record
is most likely someone typing http:// to this port: it gets a plain-HTTP 400 page that says
to use https://, and NotTLS, an OSError, closes the connection.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Sequence
from typing import NoReturn

from . import SERVER
from .httpdate import format_http_date
from .log import Trace
from .portable import gather

# Several records leave in one sendmsg() where there is one (not on Windows): no joining copy.
_GATHER = gather()

__all__ = ["NotTLS", "TLSConfigError", "TLSStream", "server_context"]

# Plaintext encrypted per send() call: the outbox's read+send chunk. The stream holds at most
# this much ciphertext (plus 22 bytes per 16 KiB record with TLS 1.3's ciphers, 29 with
# TLS 1.2's) while the kernel is full.
SEND_CHUNK = 256 * 1024
# A record carries at most 2**14 bytes of plaintext (RFC 8446 §5.1, RFC 5246 §6.2.1), and at
# most 2**14 + 256 bytes of ciphertext after its 5-byte header (RFC 8446 §5.2).
RECORD_BYTES = 2**14
RECORD_WIRE_BYTES = 5 + 2**14 + 256
# A memory BIO never gives back the memory it grew to (OpenSSL's BUF_MEM only grows), and an
# idle connection keeps both of its BIOs: so no more than one record goes into either at once.
# Bytes from the kernel enter in pieces this big; plaintext is encrypted a record at a time.
BIO_BYTES = RECORD_WIRE_BYTES
# Every TLS connection opens with a handshake record: content type 22 (RFC 8446 §5.1).
HANDSHAKE_RECORD = 0x16
# Certificate and key files are a few KiB; reading stops here (think of /dev/zero).
MAX_FILE_BYTES = 1024 * 1024

_PAGE = (
    b"<!doctype html>\n<title>400 Bad Request</title>\n<h1>400 Bad Request</h1>\n"
    b"<p>The plain HTTP request was sent to an HTTPS port.\n"
    b"<p>Use an address that begins with <code>https://</code>.\n"
)


def plain_http_answer() -> bytes:
    """The only plain HTTP this module speaks: the answer to http:// sent to the HTTPS port,
    with a Date, which RFC 9110 §6.6.1 asks of every 4xx from a server with a clock."""
    head = (
        f"HTTP/1.1 400 Bad Request\r\nDate: {format_http_date(time.time())}\r\n"
        f"Server: {SERVER}\r\nX-Content-Type-Options: nosniff\r\n"
        f"Content-Type: text/html; charset=utf-8\r\nContent-Length: {len(_PAGE)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + _PAGE


class TLSConfigError(Exception):
    """A certificate, key or password file that cannot be used; the message is one line."""


class NotTLS(OSError):
    """The client did not begin with a TLS handshake (most likely plain HTTP)."""


class _NoPassword(Exception):
    """OpenSSL asked for the key's password and no password file was given."""


# --- the context: certificate, key, and the choices a careful server makes -----------------


def server_context(
    cert: str, key: str | None = None, password_file: str | None = None
) -> ssl.SSLContext:
    """A server-side context for --tls-cert, --tls-key and --tls-password-file.

    `key` may be None when the certificate file holds the key too; the password file's first
    line is the key's password. Raises TLSConfigError, one line naming the file and the way
    out, for any file that cannot be used.
    """
    password = _read_password(password_file) if password_file is not None else None
    _check_certificate(cert)
    key_flag, key_path = ("--tls-key", key) if key is not None else ("--tls-cert", cert)
    encrypted = _check_key(key_flag, key_path)
    context = _new_context()

    def give_password() -> bytes:  # asked only for an encrypted key; never a terminal prompt
        if password is None:
            raise _NoPassword
        return password

    try:
        context.load_cert_chain(cert, key, password=give_password)
    except _NoPassword:
        raise TLSConfigError(
            f"{key_flag} {key_path}: the private key is encrypted; "
            "give a file whose first line is its password with --tls-password-file"
        ) from None
    except ValueError as error:  # CPython refuses a password over 1024 bytes
        raise TLSConfigError(
            f"--tls-password-file {password_file}: {error}; only the first line is read"
        ) from None
    except ssl.SSLError as error:
        raise TLSConfigError(
            _explain(error, cert, key_flag, key_path, password_file, encrypted)
        ) from None
    except OSError as error:  # a file vanished since we read it
        raise TLSConfigError(f"{cert}: cannot load it ({error.strerror or error})") from None
    return context


def _new_context() -> ssl.SSLContext:
    # PROTOCOL_TLS_SERVER rather than create_default_context(Purpose.CLIENT_AUTH): that one
    # also loads the system's CA store, which only matters when verifying client certificates.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2 suites: forward-secret AEAD only (RFC 9325 §4.2); TLS 1.3's are all AEAD.
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    # Client-initiated renegotiation (TLS 1.2) costs the server a handshake per request of
    # the client's choosing; no compression (CRIME); our order of ciphers, not the client's.
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = ssl.CERT_NONE  # no client certificates
    # ALPN (RFC 7301): we speak HTTP/1.1 only; a client offering just h2 gets no protocol.
    context.set_alpn_protocols(["http/1.1"])
    return context


def _read_file(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise TLSConfigError(f"{flag} {path}: cannot read it ({reason}); check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise TLSConfigError(f"{flag} {path}: over 1 MiB, so not a PEM file; check the path")
    return data


def _read_password(path: str) -> bytes:
    # The first line, without its line ending: CPython 3.14 http.server's --tls-password-file.
    password = _read_file("--tls-password-file", path).split(b"\n", 1)[0].rstrip(b"\r")
    if not password:
        raise TLSConfigError(
            f"--tls-password-file {path}: its first line is empty; write the key's password there"
        )
    return password


def _check_certificate(path: str) -> None:
    data = _read_file("--tls-cert", path)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSConfigError(
            f"--tls-cert {path}: no PEM certificate in it (-----BEGIN CERTIFICATE-----); "
            f"if it is DER, convert it: openssl x509 -inform der -in {path} -out cert.pem"
        )
    # OpenSSL's own errors say only "PEM lib": parse the certificates alone first, so a
    # damaged one is told apart from a bad key.
    try:
        store = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        store.load_verify_locations(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError):
        raise TLSConfigError(
            f"--tls-cert {path}: a certificate in it is damaged; export it again as PEM"
        ) from None


def _check_key(flag: str, path: str) -> bool:
    """Whether the PEM key in the file is encrypted; TLSConfigError when there is none."""
    data = _read_file(flag, path)
    if b"PRIVATE KEY-----" not in data:
        if flag == "--tls-cert":
            raise TLSConfigError(
                f"--tls-cert {path}: no private key in it; give the key's file with --tls-key"
            )
        raise TLSConfigError(
            f"--tls-key {path}: no PEM private key in it (-----BEGIN PRIVATE KEY-----); "
            "give the key the certificate was made with"
        )
    # PKCS#8 says "BEGIN ENCRYPTED PRIVATE KEY"; the older form says "Proc-Type: 4,ENCRYPTED".
    return b"ENCRYPTED" in data


def _explain(
    error: ssl.SSLError,
    cert: str,
    key_flag: str,
    key_path: str,
    password_file: str | None,
    encrypted: bool,
) -> str:
    """One line for what load_cert_chain() refused, once the files are known to be PEM."""
    if error.reason == "KEY_VALUES_MISMATCH":
        return (
            f"{key_flag} {key_path}: this key does not match the certificate in {cert}; "
            "give the key the certificate was made with"
        )
    if encrypted and password_file is not None:
        return (
            f"--tls-password-file {password_file}: its first line does not decrypt the key "
            f"in {key_path}; check the password"
        )
    return (
        f"{key_flag} {key_path}: OpenSSL cannot use it ({error.reason or error}); "
        f"rewrite the key as PEM: openssl pkey -in {key_path} -out key.pem"
    )


# --- the stream ----------------------------------------------------------------------------


class TLSStream:
    """One server-side TLS connection over an accepted non-blocking TCP socket, with the
    methods Connection and Outbox use on a socket: fileno, recv, send, shutdown, close."""

    # Slots: 10,000 idle connections should each cost little beyond OpenSSL's own state.
    __slots__ = (
        "_done",
        "_in",
        "_notified",
        "_out",
        "_peer_closed",
        "_plain",
        "_tls",
        "_wire",
        "established",
        "sock",
        "trace",
        "wire_received",
        "wire_sent",
    )

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext, trace: Trace | None = None
    ) -> None:
        self.sock = sock
        self._in = ssl.MemoryBIO()  # ciphertext from the kernel, not yet decrypted
        self._out = ssl.MemoryBIO()  # ciphertext OpenSSL wrote, not yet taken from it
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self._wire: list[bytes | memoryview] = []  # records the kernel has not taken yet
        self._plain: list[int] = []  # the plaintext bytes of each (0 for handshake, alerts)
        self._done = 0  # plaintext whose records flush() finished: the next send()'s count
        self._notified = False  # our close_notify has been written
        self._peer_closed = False  # the client's close_notify arrived
        self.established = False  # the handshake is done
        self.wire_received = 0  # bytes read from the socket, TLS records and all
        self.wire_sent = 0  # bytes the kernel took
        self.trace = trace  # None unless --trace: each hook costs one test of None

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        """Ciphertext waits for room in the kernel: watch for writable, then call flush()."""
        return bool(self._wire)

    def summary(self) -> str:
        """The protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"; "" before the
        handshake ends."""
        cipher = self._tls.cipher()
        if not self.established or cipher is None:
            return ""
        return f"{self._tls.version()} {cipher[0]}"

    # --- receiving -------------------------------------------------------------------------

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Plaintext, after finishing the handshake; b"" at the client's close_notify or TCP
        EOF. Raises BlockingIOError while it must wait, OSError (NotTLS, ssl.SSLError...)
        when the client does not speak TLS properly.

        Returns everything decrypted so far: at most `size` bytes read from the socket's
        ciphertext plus the rest of one partly received record (2**14 + 256 bytes at most).
        With MSG_PEEK, peeks at the ciphertext waiting in the kernel instead: is any there?
        """
        if flags & socket.MSG_PEEK:
            return self.sock.recv(size, flags)
        if self.trace is not None:
            return self._recv_traced(self.trace, size)
        return self._recv(size)

    def _recv(self, size: int) -> bytes:
        if self._peer_closed:
            return b""
        if not self.established:
            if not self._handshake(size):
                return b""  # the client left during the handshake
            # A TLS 1.3 client may send its request in the same packet as its Finished.
            data = self._decrypt()
            if data or self._peer_closed:
                return data
        while True:
            if not self._fill(size):
                return b""  # TCP EOF without close_notify: h11 judges a cut-short request
            data = self._decrypt()
            if data or self._peer_closed:
                return data

    def _fill(self, size: int) -> bool:
        """Move ciphertext from the kernel into the incoming BIO; False at TCP EOF."""
        raw = self.sock.recv(min(size, BIO_BYTES))  # BlockingIOError: nothing has arrived
        if not raw:
            return False
        if not self.wire_received and raw[0] != HANDSHAKE_RECORD:
            self._refuse_plain_http(raw)
        self.wire_received += len(raw)
        self._in.write(raw)
        return True

    def _handshake(self, size: int) -> bool:
        """Run the handshake as far as the bytes received allow; False at TCP EOF."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_output()  # our next flight, then wait for the client's
                if not self._fill(size):
                    return False
            except ssl.SSLError:
                self._send_alert()
                raise
        self.established = True
        self._send_output()  # the last flight: TLS 1.3's session tickets (RFC 8446 §4.6.1)
        return True

    def _decrypt(self) -> bytes:
        """All the plaintext in the ciphertext received so far, so none hides from select()."""
        chunks = []
        try:
            while True:
                chunk = self._tls.read(RECORD_BYTES)  # one record's plaintext at most
                if not chunk:
                    self._peer_closed = True  # close_notify (RFC 8446 §6.1)
                    break
                chunks.append(chunk)
                if not self._in.pending and not self._tls.pending():
                    break  # all read: spare the SSLWantReadError the next read would raise
        except ssl.SSLWantReadError:
            pass  # the rest of a record is still on its way
        except ssl.SSLZeroReturnError:
            self._peer_closed = True
        except ssl.SSLError:
            self._send_alert()
            raise
        if self._out.pending:
            self._send_output()  # written while reading: an answer to a KeyUpdate (§4.6.3)
        return b"".join(chunks)

    def _refuse_plain_http(self, first: bytes) -> NoReturn:
        """Answer in plain HTTP, as nginx does, so that whoever typed http:// learns to type
        https://; then close. `first` is what the client sent, read so it is not reset."""
        self.wire_received += len(first)
        with contextlib.suppress(OSError):  # if the client is gone, closing says the rest
            self.wire_sent += self.sock.send(plain_http_answer())
        if self.trace is not None:
            self.trace.say(f"tls: first byte 0x{first[0]:02x}, not a handshake: 400, plain HTTP")
        raise NotTLS(f"the client sent 0x{first[0]:02x}, not a TLS handshake: plain HTTP?")

    # --- sending ---------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt up to SEND_CHUNK bytes of `data` and return how many of them the kernel
        has taken as whole records (BlockingIOError if none). Records it has not taken yet
        stay held: call again with data that starts with the bytes not yet counted."""
        if self.trace is not None:
            return self._send_traced(self.trace, data)
        return self._send(data)

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        if len(data) < self._done + sum(self._plain):  # the caller's bug, not the client's
            raise ValueError("send() retried with less data than it was given before")
        if not self._wire and not self._done:
            if not data:
                return 0
            if not self.established:
                raise OSError(errno.ENOTCONN, "send() before the TLS handshake finished")
            self._encrypt(memoryview(data)[:SEND_CHUNK])
        if self._wire:
            try:
                self._done += self._push()
            except BlockingIOError:
                if not self._done:
                    raise  # the kernel took nothing, and nothing is finished
        finished, self._done = self._done, 0
        if not finished and self._wire:
            raise BlockingIOError(errno.EAGAIN, "the kernel took no whole TLS record")
        return finished

    def sendmsg(self, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        """send() for the outbox's gathered buffers, as if they were one: the same contract
        and retry rule. TLS encrypts from one buffer, so the first SEND_CHUNK bytes are
        joined: a copy, small beside the encryption (the outbox gathers heads and small
        bodies; large files come one slice at a time, through send())."""
        taken: list[bytes | bytearray | memoryview] = []
        room = SEND_CHUNK
        for buffer in buffers:
            taken.append(memoryview(buffer)[:room])
            room -= len(taken[-1])
            if not room:
                break
        return self.send(b"".join(taken))

    def flush(self) -> None:
        """Push held ciphertext; BlockingIOError while the kernel will not take it all."""
        if self._wire:
            self._done += self._push()  # reported by the next send()
        if self._wire:
            raise BlockingIOError(errno.EAGAIN, "the kernel took part of the TLS records")

    def _encrypt(self, plaintext: memoryview) -> None:
        """Turn plaintext into records held for the kernel, writing and taking one record at
        a time, so the outgoing BIO never grows beyond one (BIO_BYTES)."""
        for start in range(0, len(plaintext), RECORD_BYTES):
            piece = plaintext[start : start + RECORD_BYTES]
            self._tls.write(piece)
            self._wire.append(self._out.read())
            self._plain.append(len(piece))

    def _push(self) -> int:
        """Hand the held records to the kernel, as many as it takes (BlockingIOError only
        when it takes nothing); the plaintext bytes of the records it took whole."""
        wire = self._wire
        if len(wire) == 1:
            taken = self.sock.send(wire[0])
        elif _GATHER:
            taken = self.sock.sendmsg(wire)
        else:
            taken = self.sock.send(b"".join(wire))
        self.wire_sent += taken
        finished = 0
        while taken:  # drop what the kernel took: whole records, then part of one
            if len(wire[0]) > taken:
                wire[0] = memoryview(wire[0])[taken:]
                break
            taken -= len(wire.pop(0))
            finished += self._plain.pop(0)
        return finished

    def _send_output(self) -> None:
        """Send what OpenSSL wrote on its own (handshake, alerts); what the kernel will not
        take now waits for flush()."""
        if self._out.pending:
            self._wire.append(self._out.read())
            self._plain.append(0)
        if self._wire:
            with contextlib.suppress(BlockingIOError):
                # Held data records may go out with it: their plaintext is counted, and
                # reported by the next send(), so it is not sent twice.
                self._done += self._push()

    def _send_alert(self) -> None:
        # OpenSSL wrote an alert saying why it gives up (RFC 8446 §6.2): worth one send().
        with contextlib.suppress(OSError):
            self._send_output()

    # --- closing ---------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """shutdown(SHUT_WR) first sends close_notify (RFC 8446 §6.1), so the client can tell
        our end from a connection cut short; then shuts the socket."""
        if how != socket.SHUT_RD:
            self._notify()
        self.sock.shutdown(how)

    def close(self) -> None:
        """Say close_notify if it was not said yet, then close the socket: however the
        connection ends, a finished session ends with one (RFC 8446 §6.1)."""
        with contextlib.suppress(OSError):  # the client may be gone already
            self._notify()
        self.sock.close()

    def _notify(self) -> None:
        if not self.established or self._notified:
            return
        self._notified = True
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is written; we do not wait for the client's close_notify
        except ssl.SSLError:
            return  # the session is broken: there is nothing to say
        # If the kernel is full the alert is cut short: for the client, an end without one.
        self._send_output()
        if self.trace is not None:
            self.trace.say("tls: close_notify sent")

    # --- --trace ---------------------------------------------------------------------------

    def _recv_traced(self, trace: Trace, size: int) -> bytes:
        before, sent = self.wire_received, self.wire_sent
        during = "" if self.established else " (handshake)"
        data = b""
        try:
            data = self._recv(size)
        except BlockingIOError:
            raise
        except OSError as error:
            trace.say(f"tls: recv failed: {error}")
            raise
        finally:
            wire, answer = self.wire_received - before, self.wire_sent - sent
            if wire or data:
                also = f"; {answer:,} wire bytes sent" if answer else ""
                trace.say(f"tls: recv {wire:,} wire bytes -> {len(data):,} plaintext{during}{also}")
            if during and self.established:
                protocol = self._tls.selected_alpn_protocol() or "none"
                trace.say(f"tls: handshake done: {self.summary()}, ALPN {protocol}")
        if not data:
            trace.say(f"tls: the client ended ({'close_notify' if self._peer_closed else 'EOF'})")
        return data

    def _send_traced(self, trace: Trace, data: bytes | bytearray | memoryview) -> int:
        before, retry = self.wire_sent, bool(self._wire)
        try:
            count = self._send(data)
        except BlockingIOError:
            wire = self.wire_sent - before
            held = sum(len(record) for record in self._wire)
            trace.say(f"tls: send: {wire:,} wire bytes taken, {held:,} wait")
            raise
        wire = self.wire_sent - before
        if retry:
            trace.say(f"tls: send {count:,} plaintext: its last {wire:,} wire bytes taken")
        elif count:
            trace.say(f"tls: send {count:,} plaintext -> {wire:,} wire bytes")
        return count
