"""Run ownership: at most one process drives a run at a time.

The owner holds an exclusive lock for as long as it drives the run. The operating system
releases it when the process dies, even by SIGKILL, so a crashed run is never stuck
"owned". A command that finds the lock free (`aobc cancel`, `aobc approve`) knows no process
is driving the run and may act on it directly.

On Linux the lock is one byte of one shared file, `<store>/locks/runs.lock`, at an offset
derived from the run id, taken with an open-file-description lock (`F_OFD_SETLK`). Those
conflict between two opens even inside one process, like `flock`, and are released when
their open is closed, unlike classic POSIX record locks (which any close in the process
drops). One shared file matters for speed: creating a lock file per run cost ~0.7 ms per
run on this machine's filesystem (most of a tiny run on SQLite), and left one file behind
per run forever. Elsewhere each run gets its own file, locked with `flock`.

Offsets are 60 bits of the run id's SHA-256, so two live runs share a byte with
probability ~2^-60 per pair; a collision would only make one of them look busy.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Final

_OFD: Final = getattr(fcntl, "F_OFD_SETLK", None)
# struct flock on Linux (x86-64 and arm64): l_type, l_whence (short), l_start, l_len (off_t),
# l_pid (int), padding.
_FLOCK: Final = "hhqqi4x"


class RunLock:
    def __init__(self, store_dir: Path, run_id: str) -> None:
        digest = hashlib.sha256(run_id.encode()).hexdigest()
        if _OFD is not None:
            self.path = store_dir / "locks" / "runs.lock"
            self._offset = int(digest[:15], 16)
        else:
            self.path = store_dir / "locks" / f"{digest[:32]}.lock"
            self._offset = -1
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another owner (process or open) has it."""
        fd = self._open()
        try:
            if _OFD is not None:
                fcntl.fcntl(
                    fd, _OFD, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, self._offset, 1, 0)
                )
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            # Closing the open releases its lock (OFD and flock alike).
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
