"""`RedisCache`: the distributed runtime's `Cache`, on Redis (or Valkey) through redis-py.

It holds memoized node outputs (`memo:` keys) and compiled IR (`ir:` keys), under a prefix per
deployment. Losing it costs only speed, never correctness, and so it never fails:

- every command has a short timeout (`timeout`, 0.25 s by default), so a hung server stalls a
  caller that long at most;
- any error (refused, reset, timed out) turns the call into a miss (`get` gives None) or a
  no-op (`set`, `delete`), and opens a circuit: for the next `backoff` seconds (50 ms,
  doubling to `max_backoff`) calls do not even try, so an outage costs nothing per call;
- the first call after that tries again on a fresh connection (the pool reconnects), and
  one success closes the circuit.

`stats` counts hits, misses, errors and skipped calls, for metrics and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aobc.runtime.stores.config import RedisLocation, parse_redis_url

log = logging.getLogger("aobc.redis")
_T = TypeVar("_T")

#: Key namespaces within the prefix.
MEMO: Final = "memo:"
IR: Final = "ir:"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # calls that failed (each one a miss or a no-op)
    skipped: int = 0  # calls not tried while the circuit was open


class RedisCache:
    """A `Cache` on Redis that degrades to nothing; see the module docstring."""

    def __init__(
        self,
        location: RedisLocation | str,
        *,
        timeout: float = 0.25,
        max_backoff: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(location, str):
            location = parse_redis_url(location)
        self.location = location
        self.prefix = location.prefix
        self.max_backoff = max_backoff
        self.stats = CacheStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._backoff = 0.05
        self._client = redis.Redis.from_url(
            location.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No retries inside the client: one try, then the circuit decides.
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=30,
        )

    @property
    def available(self) -> bool:
        """False while the circuit is open (the last call failed recently)."""
        return self._clock() >= self._down_until

    def _call(self, what: str, command: Callable[[], _T]) -> tuple[bool, _T | None]:
        """(True, result), or (False, None) when Redis failed or the circuit is open."""
        if not self.available:
            with self._lock:
                self.stats.skipped += 1
            return False, None
        try:
            result = command()
        except (redis.RedisError, OSError) as err:
            with self._lock:
                self.stats.errors += 1
                first = self._down_until == 0.0  # it was up until now
                self._down_until = self._clock() + self._backoff
                self._backoff = min(self._backoff * 2, self.max_backoff)
            if first:
                log.warning("redis cache unavailable (%s: %s); running without it", what, err)
            return False, None
        with self._lock:
            if self._down_until:
                log.info("redis cache is back")
            self._down_until = 0.0
            self._backoff = 0.05
        return True, result

    def get(self, key: str) -> bytes | None:
        _, value = self._call("get", lambda: self._client.get(self.prefix + key))
        with self._lock:
            if isinstance(value, bytes):
                self.stats.hits += 1
                return value
            self.stats.misses += 1
        return None

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        name = self.prefix + key
        if ttl is not None and ttl <= 0:
            self.delete(key)  # expires at once, and replaces the old value
            return
        px = None if ttl is None else max(1, round(ttl * 1000))
        self._call("set", lambda: self._client.set(name, bytes(value), px=px))

    def delete(self, key: str) -> None:
        self._call("delete", lambda: self._client.delete(self.prefix + key))

    def ping(self) -> bool:
        """True if Redis answers now (tries even while the circuit is open)."""
        try:
            return bool(self._client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        self._client.close()
