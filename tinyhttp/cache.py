"""A bounded memory of small answers (hot files, folder listings), re-checked on every hit."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["Cached", "FileCache", "Identity"]

# Whether a path exists: access() answers without raising, unlike stat() on a missing path.
_present = functools.partial(os.access, mode=os.F_OK)


@dataclass(frozen=True)
class Identity:
    """What stat() says about one version of a file: any edit changes it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    # ctime changes on every write and every utime(), so an edit that restores the old
    # size and mtime (touch -d) still changes the identity.
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> Identity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class Cached:
    """An answer's bytes and headers, the path they came from, and the paths whose
    appearance would change the answer (a .br/.gz sibling, an index file that takes
    precedence). `expires` bounds how long it may be used at all (monotonic seconds)."""

    path: str
    identity: Identity
    shadows: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float = float("inf")


class FileCache:
    """Up to `max_bytes` of answers, first in first out; every hit costs one stat() and
    one access() per shadow."""

    def __init__(self, max_bytes: int, settle_seconds: float) -> None:
        self.max_bytes = max_bytes
        # Two edits within one timestamp tick leave the same identity; files changed this
        # recently are not cached, so such an edit is never served stale.
        self.settle_seconds = settle_seconds
        self._entries: dict[Hashable, Cached] = {}
        self._bytes = 0

    def get(self, key: Hashable) -> Cached | None:
        """The entry for `key`, if the file on disk is still exactly the cached version."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._still_valid(entry):
            self._drop(key)
            return None
        return entry

    def put(self, key: Hashable, entry: Cached) -> None:
        """Remember an entry, unless the file is too fresh or too big to be worth it."""
        changed = max(entry.identity.mtime_ns, entry.identity.ctime_ns) / 1e9
        # An entry that expires soon anyway (a listing) bounds its own staleness.
        fresh = time.time() - changed < self.settle_seconds and entry.expires == float("inf")
        if fresh or len(entry.body) > self.max_bytes // 4 or not self.max_bytes:
            return
        self._drop(key)
        while self._entries and self._bytes + len(entry.body) > self.max_bytes:
            self._drop(next(iter(self._entries)))  # the oldest entry
        self._entries[key] = entry
        self._bytes += len(entry.body)

    def _still_valid(self, entry: Cached) -> bool:
        try:
            info = os.stat(entry.path)
        except OSError:
            return False
        known = entry.identity
        # Field by field, not Identity.of(): the hit path is the hottest code there is.
        if (
            info.st_mtime_ns != known.mtime_ns
            or info.st_ctime_ns != known.ctime_ns
            or info.st_size != known.size
            or info.st_ino != known.inode
            or info.st_dev != known.device
        ):
            return False  # edited, replaced or swapped for a link: never stale bytes
        if entry.expires != float("inf") and time.monotonic() > entry.expires:
            return False
        return not any(map(_present, entry.shadows))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)
