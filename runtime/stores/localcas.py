"""`LocalCAS`: content-addressed blobs in a local directory, one file per object.

An object lives at `root/ab/cdef...`: the first two hex digits of its sha256 name a shard
directory (so no directory grows past a few thousand entries), the other 62 the file. A write
goes to a temporary file in the shard and is renamed into place (`os.replace`), so a reader
sees the whole object or none, and concurrent writers of the same object (threads or
processes) are harmless: they write the same bytes. Crashed writers may leave `.tmp-*` files
behind; they are never read.

With `fsync=True`, a put fsyncs the file and its directory before returning, so the object
survives power loss; without it (the default) it survives a process crash, like the event
log's default.

Every `get` re-hashes the bytes. A mismatch (disk corruption, a hand-edited file) raises
`CorruptObject`, a KeyError: the bad file is moved to `root/quarantine/` for inspection, after
which the object is absent, `has` says so and the next `put` of the same bytes writes a good
copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Final

from aobc.runtime.stores.base import CorruptObject

_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


class LocalCAS:
    """A `CAS` in a local directory; see the module docstring for the guarantees."""

    def __init__(self, root: str | Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        # `put` and `has` build paths as strings: pathlib's cost was most of a put of an
        # object already stored (a stat), which is what every run of the same workflow does.
        self._prefix = os.path.join(str(self.root), "")

    def path(self, digest: str) -> Path:
        """Where the object `digest` is (or would be) stored; ValueError if malformed."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        try:
            # The object is immutable: if a file of the right size is there, we are done. A
            # wrong size (a truncated copy) is rewritten; other damage shows up on `get`.
            if os.stat(f"{self._prefix}{digest[:2]}/{digest[2:]}").st_size == len(data):
                return digest
        except FileNotFoundError:
            pass
        path = self.path(digest)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_dir(path.parent)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            path = self.path(digest)
        except ValueError as err:
            raise KeyError(str(err)) from None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"no object {digest}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            where = self._quarantine(path, digest)
            raise CorruptObject(
                f"object {digest} is corrupt (its bytes hash differently); moved to {where}"
            )
        return data

    def has(self, digest: str) -> bool:
        if not _DIGEST.fullmatch(digest):
            return False
        return os.path.isfile(f"{self._prefix}{digest[:2]}/{digest[2:]}")

    def _quarantine(self, path: Path, digest: str) -> Path:
        """Move a corrupt file out of the way, so that the object reads as absent."""
        target = self.root / "quarantine" / f"{digest}.{uuid.uuid4().hex[:8]}"
        target.parent.mkdir(exist_ok=True)
        try:
            # A good copy put by another process at this very moment may be moved as well;
            # that is safe, the object then reads as absent and is put again.
            os.replace(path, target)
        except FileNotFoundError:
            pass  # another reader quarantined it first
        return target


def _fsync_dir(directory: Path) -> None:
    # A rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
