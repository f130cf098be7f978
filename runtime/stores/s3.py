"""`S3CAS`: the distributed runtime's content-addressed store, on S3 through boto3.

An object's key is `{prefix}sha256/{first two hex digits}/{digest}`. Objects are immutable, so
a put of bytes already there changes nothing, and concurrent puts of one object are harmless.
Every `get` re-hashes what it read: a mismatch raises `CorruptObject` (a KeyError) and deletes
the bad copy, so the next `put` writes a good one.

Outages: every request is retried with exponential backoff and jitter (0.05 s doubling to
2 s) while the failure is one that passes (no connection, a timeout, a 5xx, throttling), for
at most `retry_budget` seconds in all; then `StoreUnavailable` (code `store-unavailable`)
says which endpoint, for how long and what the last error was. A request S3 refuses for good
(bad credentials, no such bucket) raises `StoreError` (code `store-refused`) at once.

Large outputs never travel through Kafka: a worker puts them here, and only their digest goes
into its result message.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aobc.runtime.stores.base import CorruptObject, StoreError, StoreUnavailable
from aobc.runtime.stores.config import S3Location, parse_s3_url

_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_T = TypeVar("_T")

# Error codes S3 returns for a request that may succeed if sent again.
_TRANSIENT_CODES: Final = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)
_ABSENT_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3CAS:
    """A `CAS` in an S3 bucket; see the module docstring."""

    def __init__(
        self,
        location: S3Location | str,
        *,
        retry_budget: float = 30.0,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        if isinstance(location, str):
            location = parse_s3_url(location)
        self.location = location
        self.retry_budget = retry_budget
        self.retries = 0  # requests sent again after a transient failure, since opening
        self._lock = threading.Lock()
        # A session per store: boto3's default session is not thread-safe to create clients
        # from, and a client (this one) is safe to share between threads.
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3",
            endpoint_url=location.endpoint,
            aws_access_key_id=location.access_key,
            aws_secret_access_key=location.secret_key,
            region_name=location.region,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                # We retry ourselves, within a time budget rather than a count.
                retries={"total_max_attempts": 1},
                max_pool_connections=max_connections,
                s3={"addressing_style": "path"},
            ),
        )

    def child(self, prefix: str) -> S3CAS:
        """The same bucket and connections, under `prefix` within this store's prefix (a
        namespace: tenants, tests)."""
        child = copy.copy(self)
        child.location = dataclasses.replace(
            self.location, prefix=f"{self.location.prefix}{prefix.strip('/')}/"
        )
        child._lock = threading.Lock()
        child.retries = 0
        return child

    @property
    def endpoint(self) -> str:
        return self.location.endpoint or "AWS S3"

    def key(self, digest: str) -> str:
        """The object key of `digest`; ValueError if it is not a sha256 hex digest."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return f"{self.location.prefix}sha256/{digest[:2]}/{digest}"

    # -- requests, with retries ---------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], _T]) -> _T:
        began = time.monotonic()
        delay = 0.05
        attempts = 0
        while True:
            attempts += 1
            try:
                return request()
            except ClientError as err:
                code = _code(err)
                if code in _ABSENT_CODES or _status(err) == 404:
                    raise
                if code not in _TRANSIENT_CODES and _status(err) < 500:
                    raise StoreError(
                        f"s3 at {self.endpoint} refused {what} in bucket "
                        f"{self.location.bucket!r}: {err}"
                    ) from err
                last: Exception = err
            except BotoCoreError as err:  # no connection, timeouts: the network or the server
                last = err
            elapsed = time.monotonic() - began
            if elapsed + delay > self.retry_budget:
                raise StoreUnavailable(
                    f"s3 at {self.endpoint} did not answer {what} for {elapsed:.1f} s "
                    f"({attempts} attempts; retry budget {self.retry_budget:g} s): {last}"
                ) from last
            with self._lock:
                self.retries += 1
            time.sleep(delay * random.uniform(0.5, 1.0))  # backoff, jittered
            delay = min(delay * 2, 2.0)

    # -- the CAS ------------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = self.key(digest)
        self._call(
            f"put {digest}",
            lambda: self._client.put_object(Bucket=self.location.bucket, Key=key, Body=data),
        )
        return digest

    def get(self, digest: str) -> bytes:
        try:
            key = self.key(digest)
        except ValueError as err:
            raise KeyError(str(err)) from None

        def fetch() -> bytes:
            response = self._client.get_object(Bucket=self.location.bucket, Key=key)
            body: bytes = response["Body"].read()
            return body

        try:
            data = self._call(f"get {digest}", fetch)
        except ClientError:
            raise KeyError(f"no object {digest}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            self._call(
                f"delete {digest}",
                lambda: self._client.delete_object(Bucket=self.location.bucket, Key=key),
            )
            raise CorruptObject(
                f"object {digest} is corrupt (its bytes hash differently); deleted from "
                f"s3://{self.location.bucket}/{key}"
            )
        return data

    def has(self, digest: str) -> bool:
        try:
            key = self.key(digest)
        except ValueError:
            return False
        try:
            self._call(
                f"head {digest}",
                lambda: self._client.head_object(Bucket=self.location.bucket, Key=key),
            )
        except ClientError:
            return False
        return True

    def close(self) -> None:
        self._client.close()
