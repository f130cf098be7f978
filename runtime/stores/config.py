"""`StoreConfig`: where the distributed runtime's four stores are, one format for every process.

Each store is one URL, taken from a flag or else from the environment:

| store    | flag             | environment        | form                                              |
| -------- | ---------------- | ------------------ | ------------------------------------------------- |
| Postgres | `--postgres-url` | `AOBC_POSTGRES_URL`| `postgresql://user[:pw]@host:port/db[?schema=s]`  |
| Kafka    | `--kafka-url`    | `AOBC_KAFKA_URL`   | `kafka://host:port[,host:port][?prefix=p]`        |
| S3       | `--s3-url`       | `AOBC_S3_URL`      | `s3://bucket[/prefix]` (AWS: credentials and      |
|          |                  |                    | region from the usual AWS chain), or              |
|          |                  |                    | `http[s]://[key:secret@]host:port/bucket[/prefix]`|
| Redis    | `--redis-url`    | `AOBC_REDIS_URL`   | `redis://[:pw@]host:port[/db][?prefix=p]`, `rediss://`|

Passwords may stand in the URLs or in the client libraries' own variables (`PGPASSWORD`,
`AWS_SECRET_ACCESS_KEY`, ...). A URL that cannot be used raises `StoreConfigError` (code
`store-config`) naming the flag and variable it came from.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from aobc import errorcodes
from aobc.runtime.stores.base import StoreError

#: store -> (flag, environment variable)
SOURCES: Final = {
    "postgres": ("--postgres-url", "AOBC_POSTGRES_URL"),
    "kafka": ("--kafka-url", "AOBC_KAFKA_URL"),
    "s3": ("--s3-url", "AOBC_S3_URL"),
    "redis": ("--redis-url", "AOBC_REDIS_URL"),
}


class StoreConfigError(StoreError, ValueError):
    """A store URL is missing or malformed."""

    code = errorcodes.STORE_CONFIG


@dataclass(frozen=True, slots=True)
class PostgresLocation:
    dsn: str  # for libpq, without our own parameters
    schema: str = "public"


@dataclass(frozen=True, slots=True)
class KafkaLocation:
    bootstrap: str  # host:port[,host:port...]
    prefix: str = ""  # before every topic and group name


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str = ""  # before every object key ("" or ending in "/")
    endpoint: str | None = None  # None: AWS
    access_key: str | None = None  # None: the AWS credential chain
    secret_key: str | None = None
    region: str = "us-east-1"


@dataclass(frozen=True, slots=True)
class RedisLocation:
    url: str  # for redis-py, without our own parameters
    prefix: str = "aobc:"


def _split_params(url: str, ours: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Take our own query parameters out of `url` (the rest stays for the client library)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in query if k in ours}
    rest = urlencode([(k, v) for k, v in query if k not in ours])
    return urlunsplit(parts._replace(query=rest)), mine


def _fail(store: str, url: str, why: str) -> StoreConfigError:
    flag, env = SOURCES[store]
    shown = _redact(url)
    return StoreConfigError(f"{store} URL {shown!r} (from {flag} or ${env}): {why}")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_postgres_url(url: str) -> PostgresLocation:
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise _fail("postgres", url, "expected postgresql://user@host:port/database")
    dsn, mine = _split_params(url, ("schema",))
    schema = mine.get("schema", "public")
    if not schema:
        raise _fail("postgres", url, "the schema parameter is empty")
    return PostgresLocation(dsn, schema)


def parse_kafka_url(url: str) -> KafkaLocation:
    parts = urlsplit(url if "://" in url else f"kafka://{url}")
    if parts.scheme != "kafka" or not parts.netloc:
        raise _fail("kafka", url, "expected kafka://host:port[,host:port...]")
    for server in parts.netloc.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise _fail("kafka", url, f"{server!r} is not host:port")
    _, mine = _split_params(url, ("prefix",))
    return KafkaLocation(parts.netloc, mine.get("prefix", ""))


def parse_s3_url(url: str) -> S3Location:
    parts = urlsplit(url)
    _, mine = _split_params(url, ("region",))
    region = mine.get("region", "us-east-1")
    if parts.scheme == "s3":
        bucket, path = parts.netloc, parts.path
        endpoint = None
    elif parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise _fail("s3", url, "no host")
        bucket, _, path = parts.path.lstrip("/").partition("/")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        endpoint = f"{parts.scheme}://{host}"
    else:
        raise _fail("s3", url, "expected s3://bucket[/prefix] or http(s)://host:port/bucket")
    if not bucket:
        raise _fail("s3", url, "no bucket")
    prefix = path.strip("/")
    return S3Location(
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        endpoint=endpoint,
        access_key=unquote(parts.username) if parts.username else None,
        secret_key=unquote(parts.password) if parts.password else None,
        region=region,
    )


def parse_redis_url(url: str) -> RedisLocation:
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise _fail("redis", url, "expected redis://host:port[/db]")
    rest, mine = _split_params(url, ("prefix",))
    return RedisLocation(rest, mine.get("prefix", "aobc:"))


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The URLs of the four stores; None where not configured."""

    postgres: str | None = None
    kafka: str | None = None
    s3: str | None = None
    redis: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreConfig:
        env = os.environ if environ is None else environ
        return cls(**{store: env.get(var) or None for store, (_, var) in SOURCES.items()})

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add `--postgres-url`, `--kafka-url`, `--s3-url` and `--redis-url`."""
        for store, (flag, env) in SOURCES.items():
            parser.add_argument(
                flag, dest=f"{store}_url", metavar="URL", help=f"the {store} store (${env})"
            )

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> StoreConfig:
        """Flags first, the environment for what they leave unset."""
        env = cls.from_env(environ)
        given = {store: getattr(args, f"{store}_url", None) for store in SOURCES}
        return cls(**{s: given[s] or getattr(env, s) for s in SOURCES})

    def require(self, *stores: str) -> None:
        """Raise StoreConfigError unless each of `stores` has a URL that parses."""
        for store in stores:
            url = getattr(self, store)
            flag, env = SOURCES[store]
            if not url:
                raise StoreConfigError(f"no {store} URL: pass {flag} or set ${env}")
            PARSERS[store](url)

    def redacted(self) -> dict[str, str | None]:
        """The URLs with passwords masked, for logs."""
        return {
            f.name: None if getattr(self, f.name) is None else _redact(getattr(self, f.name))
            for f in fields(self)
        }


PARSERS: Final = {
    "postgres": parse_postgres_url,
    "kafka": parse_kafka_url,
    "s3": parse_s3_url,
    "redis": parse_redis_url,
}
