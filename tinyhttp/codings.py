"""Precompressed siblings: `file.br` or `file.gz`, made ahead of time, sent to clients that
accept that content coding (RFC 9110 §8.4) instead of the file itself."""

from __future__ import annotations

import os
import stat

from . import negotiate
from .portable import O_NOFOLLOW, OPEN_FLAGS

__all__ = ["CODINGS", "precompressed"]

# In order of preference: brotli is the smaller of the two.
CODINGS = (("br", ".br"), ("gzip", ".gz"))


def precompressed(
    real: str, info: os.stat_result, accept: str | None, follow_symlinks: bool
) -> tuple[tuple[int, os.stat_result, str] | None, bool]:
    """The sibling to send instead of the file at `real`, opened (descriptor, fstat, coding),
    or None; and whether the file has any up-to-date sibling at all (then every answer for
    it varies on Accept-Encoding)."""
    chosen = None
    has_siblings = False
    for coding, suffix in CODINGS:
        sibling = _sibling(real + suffix, info, follow_symlinks)
        if sibling is None:
            continue
        has_siblings = True
        if chosen is None and negotiate.accepts_coding(accept, coding):
            chosen = (sibling[0], sibling[1], coding)
        else:
            os.close(sibling[0])
    return chosen, has_siblings


def _sibling(
    path: str, original: os.stat_result, follow_symlinks: bool
) -> tuple[int, os.stat_result] | None:
    """An up-to-date precompressed sibling, opened; None if there is none."""
    # O_NOFOLLOW: the sibling stands in the original's real folder, so refusing links
    # keeps it inside the root without another realpath().
    try:
        fd = os.open(path, OPEN_FLAGS | (0 if follow_symlinks else O_NOFOLLOW))
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_mtime_ns < original.st_mtime_ns:
        os.close(fd)  # a stale sibling would serve yesterday's bytes
        return None
    return fd, info
