"""`TieredCAS`: the distributed CAS, small objects in Postgres and the rest in S3.

A node's output is usually a few bytes to a few KiB. On S3 every put is a round trip of
milliseconds (4-8 ms on SeaweedFS here), which on a worker sat on the path of every node. So
objects up to `limit` bytes (16 KiB, the size below which a value also travels inline in its
Kafka message) go to the Postgres table `blobs`, where a worker writes them in the same
transaction that records its result (`PostgresTransaction.put_blob`): one round trip, no
extra commit. Larger objects go to S3, and never through Kafka.

Reads look in `blobs` first (a miss costs one indexed lookup), then in S3, so an object put by
a process that only knows S3 (an older one, `aobc deploy`) is still found. Every read is
checked against its digest, as the other CAS implementations do.
"""

from __future__ import annotations

from aobc.canonical import sha256_hex
from aobc.runtime.stores.base import CAS, CorruptObject
from aobc.runtime.stores.postgres import PostgresEventLog

#: Objects up to this many bytes live in Postgres.
SMALL_LIMIT = 16 * 1024


class TieredCAS:
    """A CAS on Postgres (`blobs`, small objects) and `large` (S3) for the rest."""

    def __init__(self, events: PostgresEventLog, large: CAS, limit: int = SMALL_LIMIT) -> None:
        self.events = events
        self.large = large
        self.limit = limit

    def put(self, data: bytes) -> str:
        if len(data) > self.limit:
            return self.large.put(data)
        digest = sha256_hex(data)
        self.events._put_blob(self.events._conn(), digest, data)
        return digest

    def get(self, digest: str) -> bytes:
        row = (
            self.events._conn()
            .execute("SELECT data FROM blobs WHERE digest = %s", (digest,))
            .fetchone()
        )
        if row is None:
            return self.large.get(digest)
        data = bytes(row[0])
        if sha256_hex(data) != digest:
            raise CorruptObject(f"blob {digest} does not match its digest")
        return data

    def has(self, digest: str) -> bool:
        row = (
            self.events._conn()
            .execute("SELECT 1 FROM blobs WHERE digest = %s", (digest,))
            .fetchone()
        )
        return row is not None or self.large.has(digest)

    def close(self) -> None:
        close = getattr(self.large, "close", None)
        if close is not None:
            close()
