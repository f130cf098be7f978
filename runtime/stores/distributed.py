"""`DistributedStores`: the four stores of the distributed runtime, opened from one config.

    config = StoreConfig.from_env()          # or StoreConfig.from_args(args)
    with DistributedStores.open(config) as stores:
        stores.events.append(...)             # Postgres
        stores.cas.put(...)                   # Postgres (small) or S3
        await stores.bus.publish(...)         # Kafka
        stores.cache.get(...)                 # Redis

`open(..., relay=True)` also runs an `OutboxRelay` thread, publishing what transactions put in
the outbox (a process that writes state changes with messages runs one; any number may, one
is active at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from aobc.runtime.stores.config import StoreConfig, parse_kafka_url
from aobc.runtime.stores.kafka import KafkaBus, KafkaSettings
from aobc.runtime.stores.postgres import OutboxRelay, PostgresEventLog
from aobc.runtime.stores.redis import RedisCache
from aobc.runtime.stores.s3 import S3CAS
from aobc.runtime.stores.tiered import TieredCAS


def kafka_settings(url: str, **overrides: Any) -> KafkaSettings:
    """KafkaSettings from a `kafka://` URL (bootstrap and prefix), with field overrides."""
    location = parse_kafka_url(url)
    return replace(KafkaSettings(location.bootstrap, prefix=location.prefix), **overrides)


@dataclass
class DistributedStores:
    """The four stores of one process on the distributed backend."""

    events: PostgresEventLog
    cas: TieredCAS  # small objects in Postgres, the rest in S3
    bus: KafkaBus
    cache: RedisCache
    relay: OutboxRelay | None = None

    @classmethod
    def open(
        cls,
        config: StoreConfig,
        *,
        relay: bool = False,
        kafka: KafkaSettings | None = None,
        direct: bool = True,
    ) -> DistributedStores:
        """Open every store of `config` (all four are required); `kafka` replaces the
        settings the Kafka URL gives; `direct`: the relay publishes this process's own
        messages at commit (see `OutboxRelay`)."""
        config.require("postgres", "kafka", "s3", "redis")
        assert config.postgres and config.kafka and config.s3 and config.redis
        opened: list[object] = []
        try:
            events = PostgresEventLog(config.postgres)
            opened.append(events)
            bus = KafkaBus(kafka or kafka_settings(config.kafka))
            opened.append(bus)
            cas = TieredCAS(events, S3CAS(config.s3))
            stores = cls(events, cas, bus, RedisCache(config.redis))
        except BaseException:
            for store in reversed(opened):
                store.close()  # type: ignore[attr-defined]
            raise
        if relay:
            stores.relay = OutboxRelay(events, bus, direct=direct).start()
        return stores

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.bus.close()
        self.events.close()
        self.cas.close()
        self.cache.close()

    def __enter__(self) -> DistributedStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
