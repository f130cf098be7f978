"""Run ownership: at most one process drives a run at a time.

The owner holds an exclusive `flock` on `<store>/locks/<run>.lock` for as long as it drives
the run. The operating system releases the lock when the process dies, even by SIGKILL, so
a crashed run is never stuck "owned". A command that finds the lock free (`aobc cancel`,
`aobc approve`) knows no process is driving the run and may act on it directly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType


class RunLock:
    def __init__(self, store_dir: Path, run_id: str) -> None:
        safe = hashlib.sha256(run_id.encode()).hexdigest()[:32]
        self.path = store_dir / "locks" / f"{safe}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another process owns the run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
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
