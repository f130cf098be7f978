"""The embedded stores: the default backend, a directory and no server.

`store_dir/aobc.db` holds the event log (SQLite), `store_dir/cas/` the blobs; the bus and the
cache live in the process. Several processes may share one store directory (an engine and
CLI commands): the log and the CAS are safe for that, and each process has its own bus and
cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aobc.runtime.stores.base import CAS, EventLog
from aobc.runtime.stores.localcas import LocalCAS
from aobc.runtime.stores.memory import MemoryBus, MemoryCache, MemoryCAS, MemoryEventLog
from aobc.runtime.stores.sqlite import SqliteEventLog


def default_store_dir() -> Path:
    """`$AOBC_STORE`, or `.aobc` in the current directory (as an absolute path)."""
    configured = os.environ.get("AOBC_STORE")
    return (Path(configured).expanduser() if configured else Path(".aobc")).absolute()


@dataclass
class EmbeddedStores:
    """The four stores of one process; `dir` is the store directory (None in memory)."""

    events: EventLog
    cas: CAS
    bus: MemoryBus
    cache: MemoryCache
    dir: Path | None = None

    @classmethod
    def open(cls, store_dir: Path, *, durable: bool = False) -> EmbeddedStores:
        """Open (creating if needed) the store in `store_dir`. `durable=True` makes every
        commit and blob survive power loss, not only process crashes, at a cost in speed."""
        store_dir = Path(store_dir)
        store_dir.mkdir(parents=True, exist_ok=True)
        events = SqliteEventLog(store_dir / "aobc.db", durable=durable)
        cas = LocalCAS(store_dir / "cas", fsync=durable)
        return cls(events, cas, MemoryBus(), MemoryCache(), store_dir)

    @classmethod
    def memory(cls) -> EmbeddedStores:
        """Stores that keep nothing once the process ends: tests, throwaway runs."""
        return cls(MemoryEventLog(), MemoryCAS(), MemoryBus(), MemoryCache())

    def close(self) -> None:
        self.bus.close()
        self.events.close()

    def __enter__(self) -> EmbeddedStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
