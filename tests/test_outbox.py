"""The Outbox on its own: bytes and file slices through a socket.socketpair(), partial sends,
files that shrink or grow, descriptors closed exactly once, answers handed back when sent.

Every socket has a timeout (the reader) or is non-blocking (the writer, like the server's), so
a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyhttp.log import Exchange
from tinyhttp.message import FileSlice
from tinyhttp.outbox import (
    HIGH_WATER,
    MAX_ANSWERS,
    MAX_FILES,
    SENDFILE_CHUNK,
    TURN_BYTES,
    FileShrank,
    Outbox,
)

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test must close every descriptor it opened (and the Outbox every file it sent)."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    leaked = set(os.listdir("/proc/self/fd")) - before
    assert not leaked, f"file descriptors left open: {sorted(leaked)}"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(writer, reader): the writer non-blocking like the server's, the reader with a timeout."""
    writer, reader = socket.socketpair()
    writer.setblocking(False)
    reader.settimeout(TIMEOUT)
    try:
        yield writer, reader
    finally:
        writer.close()
        reader.close()


def _pattern(size: int) -> bytes:
    """Bytes in which every 4-byte word is its own index: any reordering or gap shows."""
    words = (size + 3) // 4
    return b"".join(i.to_bytes(4, "big") for i in range(words))[:size]


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _pump(outbox: Outbox, writer: socket.socket, reader: socket.socket, expected: int) -> bytes:
    """Flush and read in turn until `expected` bytes arrived; the reader's timeout bounds it."""
    received = bytearray()
    while outbox or len(received) < expected:
        if outbox:
            outbox.flush(writer)
        if len(received) < expected:
            received += reader.recv(1 << 16)
    return bytes(received)


def test_write_and_flush_deliver_bytes_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    outbox = Outbox()
    assert not outbox and (outbox.queued - outbox.sent) == 0
    pieces = [b"HTTP/1.1 200 OK\r\n", b"", b"Content-Length: 5\r\n\r\n", b"hello"]
    for piece in pieces:
        outbox.write(piece)  # b"" queues nothing
    expected = b"".join(pieces)
    assert outbox and (outbox.queued - outbox.sent) == len(expected)
    assert outbox.flush(writer) == len(expected)
    assert not outbox and (outbox.queued - outbox.sent) == 0
    assert _pump(outbox, writer, reader, len(expected)) == expected


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_file_slice_is_sent_fully_and_closed(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    writer, reader = pair
    data = _pattern(2 * SENDFILE_CHUNK + 12345)  # several sendfile calls, the last one short
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.write(b"HEAD\r\n")
        outbox.add_file(FileSlice(fd, 0, len(data)))
        outbox.write(b"TAIL")
        assert (outbox.queued - outbox.sent) == 6 + len(data) + 4
        received = _pump(outbox, writer, reader, 6 + len(data) + 4)
    finally:
        outbox.close()
    assert received == b"HEAD\r\n" + data + b"TAIL"
    assert (outbox.queued - outbox.sent) == 0 and not outbox
    assert _is_closed(fd), "the outbox must close the file once its slice is sent"


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_file_slice_from_an_offset(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    writer, reader = pair
    data = _pattern(100_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.add_file(FileSlice(fd, 1001, 50_000))
        received = _pump(outbox, writer, reader, 50_000)
    finally:
        outbox.close()
    assert received == data[1001:51001]
    assert _is_closed(fd)


def test_read_and_send_fallback_gives_the_same_bytes(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    writer, reader = pair
    data = _pattern(SENDFILE_CHUNK + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    results = []
    for use_sendfile in (True, False):
        outbox = Outbox(sendfile=use_sendfile)
        try:
            outbox.add_file(FileSlice(_open(path), 0, len(data)))
            results.append(_pump(outbox, writer, reader, len(data)))
        finally:
            outbox.close()
    assert results[0] == results[1] == data


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_file_that_shrank_raises_file_shrank(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    writer, reader = pair
    path = tmp_path / "shrinks.bin"
    path.write_bytes(_pattern(10_000))
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.add_file(FileSlice(fd, 0, 10_000))  # the length promised in Content-Length
        os.truncate(path, 100)
        with pytest.raises(FileShrank):
            outbox.flush(writer)
        assert reader.recv(1 << 16) == _pattern(100)  # what there was went out
        assert (outbox.queued - outbox.sent) == 10_000 - 100
    finally:
        outbox.close()
    assert _is_closed(fd), "close() must release the file of a failed slice"
    assert issubclass(FileShrank, OSError)


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_file_that_grew_is_sent_only_up_to_the_promise(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    writer, reader = pair
    path = tmp_path / "grows.bin"
    path.write_bytes(_pattern(1000))
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.add_file(FileSlice(fd, 0, 1000))
        with path.open("ab") as file:
            file.write(b"X" * 5000)
        received = _pump(outbox, writer, reader, 1000)
    finally:
        outbox.close()
    assert received == _pattern(1000)
    reader.setblocking(False)
    with pytest.raises(BlockingIOError):
        reader.recv(1)  # nothing past the promised length
    assert _is_closed(fd)


def test_partial_send_leaves_bytes_pending(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair  # the reader does not read: the socket buffer fills up
    data = _pattern(8 * 1024 * 1024)
    outbox = Outbox()
    try:
        outbox.write(data)
        sent = outbox.flush(writer)  # returns, rather than blocking, when the socket is full
        assert 0 < sent < len(data)
        assert (outbox.queued - outbox.sent) == len(data) - sent > 0
        assert bool(outbox) is True
        assert outbox.flush(writer) == 0  # still full: nothing more, no error
        # Once the peer reads, the rest goes out intact.
        assert _pump(outbox, writer, reader, len(data)) == data
        assert (outbox.queued - outbox.sent) == 0 and not outbox
    finally:
        outbox.close()


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_partial_file_send_keeps_the_file_open_until_close(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    writer, _ = pair
    path = tmp_path / "big.bin"
    path.write_bytes(_pattern(8 * 1024 * 1024))
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.add_file(FileSlice(fd, 0, 8 * 1024 * 1024))
        sent = outbox.flush(writer)
        assert 0 < sent < 8 * 1024 * 1024
        assert (outbox.queued - outbox.sent) == 8 * 1024 * 1024 - sent
        assert bool(outbox) is True
        assert not _is_closed(fd)
    finally:
        outbox.close()
    assert _is_closed(fd)
    assert (outbox.queued - outbox.sent) == 0 and not outbox


def test_flush_to_a_closed_peer_raises_oserror(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    reader.close()
    outbox = Outbox()
    try:
        outbox.write(b"anyone there?")
        with pytest.raises(OSError):
            outbox.flush(writer)
    finally:
        outbox.close()


class _Sink:
    """A socket that takes every byte at once, like a very fast reader."""

    def send(self, data: bytes) -> int:
        return len(data)


def test_one_flush_leaves_the_loop_to_others(tmp_path: Path) -> None:
    # A reader that never fills its socket must not keep the loop to itself.
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(3 * TURN_BYTES))
    outbox = Outbox(sendfile=False)
    try:
        outbox.add_file(FileSlice(_open(path), 0, 3 * TURN_BYTES))
        sent = outbox.flush(_Sink())  # type: ignore[arg-type]
        assert TURN_BYTES <= sent < 2 * TURN_BYTES
        assert (outbox.queued - outbox.sent) == 3 * TURN_BYTES - sent
    finally:
        outbox.close()


# --- shared descriptors, answers, and when to stop taking requests -------------------------


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_slices_of_one_descriptor_close_it_once_at_the_last(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path, use_sendfile: bool
) -> None:
    # The parts of a multipart answer: one descriptor, sent by offset, closed by the last.
    writer, reader = pair
    data = _pattern(10_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = _open(path)
    outbox = Outbox(sendfile=use_sendfile)
    try:
        outbox.add_file(FileSlice(fd, 9000, 100, last=False))
        outbox.write(b"--sep--")
        outbox.add_file(FileSlice(fd, 10, 20, last=False))
        outbox.add_file(FileSlice(fd, 500, 5, last=True))
        received = _pump(outbox, writer, reader, 100 + 7 + 20 + 5)
    finally:
        outbox.close()
    assert received == data[9000:9100] + b"--sep--" + data[10:30] + data[500:505]
    assert _is_closed(fd)


def test_closing_mid_answer_closes_a_shared_descriptor_once(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    fd = _open(path)
    outbox = Outbox()
    outbox.add_file(FileSlice(fd, 0, 10, last=False))
    outbox.add_file(FileSlice(fd, 20, 10, last=True))
    assert not outbox.full()  # MAX_FILES counts descriptors, not slices: one here
    outbox.close()
    assert _is_closed(fd)


def _exchange() -> Exchange:
    return Exchange("127.0.0.1", None, 0.0, 200)


def test_answers_come_back_when_their_last_byte_is_sent(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    outbox = Outbox()
    first, second = _exchange(), _exchange()
    outbox.write(b"head one")
    first.body_from = outbox.queued
    outbox.write(b"body one")
    outbox.answers.add(first, outbox.queued)
    outbox.write(b"head two, body two")
    outbox.answers.add(second, outbox.queued)
    assert outbox.answers.take(outbox.sent) == []  # nothing sent yet
    assert _pump(outbox, writer, reader, 34) == b"head onebody onehead two, body two"
    assert outbox.answers.take(outbox.sent) == [first, second]
    assert (first.body_from, first.ends_at) == (8, 16)
    assert outbox.answers.take(outbox.sent) == []  # each one only once


def test_a_closed_outbox_hands_back_the_answers_it_cut(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, _ = pair  # nobody reads: the answer cannot all go out
    outbox = Outbox()
    answer = _exchange()
    outbox.write(b"h")
    answer.body_from = outbox.queued
    outbox.write(_pattern(8 * 1024 * 1024))
    outbox.answers.add(answer, outbox.queued)
    sent = outbox.flush(writer)
    assert 0 < sent < outbox.queued
    assert outbox.answers.take(outbox.sent) == []
    assert outbox.close() == [answer]
    assert outbox.sent == sent  # what the log will say was sent


def test_full_counts_bytes_files_and_answers(tmp_path: Path) -> None:
    outbox = Outbox()
    outbox.write(b"x" * (HIGH_WATER - 1))
    assert not outbox.full()
    outbox.write(b"x")
    assert outbox.full()
    outbox.close()

    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    outbox = Outbox()
    for _ in range(MAX_FILES):
        assert not outbox.full()
        outbox.add_file(FileSlice(_open(path), 0, 1))
    assert outbox.full()  # one more open file would pass the bound
    outbox.close()

    outbox = Outbox()
    for _ in range(MAX_ANSWERS):
        assert not outbox.full()
        outbox.write(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        outbox.answers.add(_exchange(), outbox.queued)
    assert outbox.full()
    outbox.close()
