"""The file a Unix domain socket lives at: a stale one replaced, a live one never taken,
ours removed when the server stops."""

from __future__ import annotations

import os
import socket
import stat

from .config import Config

__all__ = ["clear_stale", "reason", "remove_socket_file"]

# A probe of an existing socket file gives up after this long (a live server whose accept
# queue is full would otherwise keep us waiting).
PROBE_TIMEOUT = 1.0


def clear_stale(path: str) -> str | None:
    """Remove a socket file left by a dead server at `path`; if the path cannot be used,
    a sentence saying why.

    A socket file outlives its server if the server is killed. Connecting tells the two apart:
    nobody accepts on a stale file, so the kernel refuses at once.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot use unix:{path}: {reason(error)}"
    if not stat.S_ISSOCK(mode):
        # connect() to a plain file is refused too: never take that for a stale socket.
        return f"unix:{path} exists and is not a socket; choose another --unix path"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: a leftover from a server that died
            return None
        except TimeoutError:
            pass  # someone listens but is too busy to answer: alive
        except OSError as error:
            return f"cannot use unix:{path}: {reason(error)}"
    return f"unix:{path} is in use by a running server; choose another --unix path"


def reason(error: OSError) -> str:
    """Why a socket call failed, in words."""
    # "AF_UNIX path too long" comes with no errno and no strerror, only its message.
    return error.strerror or str(error)


def remove_socket_file(config: Config) -> None:
    """Remove the Unix socket file this server listened on, once it is done."""
    if config.unix is not None and os.path.exists(config.unix):
        os.unlink(config.unix)
