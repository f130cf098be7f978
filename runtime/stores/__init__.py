"""Where runs live: the event log, the content-addressed store, the bus and the cache.

`base.py` defines the four interfaces; `embedded` implements them on SQLite and a local
directory (the default, no server); the distributed runtime implements them on Postgres, S3,
Kafka and Redis. One conformance suite runs against both.
"""
