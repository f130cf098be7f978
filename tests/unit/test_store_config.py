"""The distributed stores' connection URLs: one format, from flags or the environment."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from aobc import errorcodes
from aobc.runtime.stores.config import (
    StoreConfig,
    StoreConfigError,
    parse_kafka_url,
    parse_postgres_url,
    parse_redis_url,
    parse_s3_url,
)


def test_urls_parse_into_locations() -> None:
    pg = parse_postgres_url("postgresql://u:pw@db:5432/aobc?schema=prod&sslmode=require")
    assert pg.schema == "prod"
    assert pg.dsn == "postgresql://u:pw@db:5432/aobc?sslmode=require"  # ours removed
    assert parse_postgres_url("postgres://h/db").schema == "public"
    kafka = parse_kafka_url("kafka://k1:9092,k2:9093?prefix=staging.")
    assert (kafka.bootstrap, kafka.prefix) == ("k1:9092,k2:9093", "staging.")
    assert parse_kafka_url("k1:9092").bootstrap == "k1:9092"
    s3 = parse_s3_url("http://key:se%2Fcret@127.0.0.1:8333/bucket/some/prefix")
    assert (s3.endpoint, s3.bucket, s3.prefix) == (
        "http://127.0.0.1:8333",
        "bucket",
        "some/prefix/",
    )
    assert (s3.access_key, s3.secret_key) == ("key", "se/cret")
    aws = parse_s3_url("s3://bucket?region=eu-west-1")
    assert (aws.endpoint, aws.bucket, aws.prefix, aws.region) == (None, "bucket", "", "eu-west-1")
    assert aws.access_key is None  # the AWS credential chain
    redis = parse_redis_url("redis://:pw@cache:6379/2?prefix=tenant1:")
    assert (redis.url, redis.prefix) == ("redis://:pw@cache:6379/2", "tenant1:")
    assert parse_redis_url("rediss://cache").prefix == "aobc:"


@pytest.mark.parametrize(
    ("parse", "url", "why"),
    [
        (parse_postgres_url, "mysql://h/db", "expected postgresql://"),
        (parse_postgres_url, "postgresql://h/db?schema=", "schema parameter is empty"),
        (parse_kafka_url, "kafka://k1", "is not host:port"),
        (parse_kafka_url, "http://k1:9092", "expected kafka://"),
        (parse_s3_url, "ftp://h/b", "expected s3://"),
        (parse_s3_url, "http://h:1/", "no bucket"),
        (parse_redis_url, "memcached://h", "expected redis://"),
    ],
)
def test_bad_urls_raise_a_coded_error(parse: object, url: str, why: str) -> None:
    with pytest.raises(StoreConfigError, match=why) as caught:
        parse(url)  # type: ignore[operator]
    assert caught.value.code is errorcodes.STORE_CONFIG
    assert isinstance(caught.value, ValueError)


def test_passwords_are_redacted_in_errors_and_logs() -> None:
    with pytest.raises(StoreConfigError) as caught:
        parse_postgres_url("mysql://u:secret@h/db")
    assert "secret" not in str(caught.value) and "***" in str(caught.value)
    config = StoreConfig(postgres="postgresql://u:secret@h/db", redis="redis://h:1")
    assert config.redacted() == {
        "postgres": "postgresql://u:***@h/db",
        "kafka": None,
        "s3": None,
        "redis": "redis://h:1",
    }


def test_flags_override_the_environment() -> None:
    env = {"AOBC_POSTGRES_URL": "postgresql://env/db", "AOBC_KAFKA_URL": "kafka://env:1"}
    assert StoreConfig.from_env(env) == StoreConfig(
        postgres="postgresql://env/db", kafka="kafka://env:1"
    )
    parser = argparse.ArgumentParser()
    StoreConfig.add_arguments(parser)
    args = parser.parse_args(["--kafka-url", "kafka://flag:2", "--s3-url", "s3://b"])
    config = StoreConfig.from_args(args, env)
    assert config == StoreConfig(
        postgres="postgresql://env/db", kafka="kafka://flag:2", s3="s3://b", redis=None
    )
    with pytest.raises(
        StoreConfigError, match=r"no redis URL: pass --redis-url or set \$AOBC_REDIS_URL"
    ):
        config.require("postgres", "kafka", "s3", "redis")
    config.require("postgres", "kafka", "s3")


def test_topics_are_renamed_and_sized_by_flags_or_environment() -> None:
    from aobc.cli.cluster import topic_specs
    from aobc.runtime.stores.config import StoreConfigError

    topics = topic_specs(["node.results=results:24", "node.jobs.high=:3", "node.results=r2"])
    assert (topics["node.results"].name, topics["node.results"].partitions) == ("r2", 24)
    assert (topics["node.jobs.high"].name, topics["node.jobs.high"].partitions) == (
        "node.jobs.high",
        3,
    )
    assert topics["node.jobs.low"].name == "node.jobs.low"  # the others as they were
    for bad in ("jobs=x", "node.results", "node.results=a:0", "node.results=a:many"):
        with pytest.raises(StoreConfigError, match="--topic"):
            topic_specs([bad])


def test_a_bad_topic_flag_is_a_diagnostic_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "aobc", "worker", "--topic", "nope=x",
         "--postgres-url", "postgresql://127.0.0.1:1/x", "--kafka-url", "kafka://127.0.0.1:1",
         "--s3-url", "http://127.0.0.1:1/b", "--redis-url", "redis://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "[store-config]" in done.stderr and "--topic 'nope=x'" in done.stderr
    assert "Traceback" not in done.stderr
