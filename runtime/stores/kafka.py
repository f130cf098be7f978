"""`KafkaBus`: the `Bus` on Kafka, through confluent-kafka (librdkafka).

Topics: the runtime names logical topics (`node.jobs.high`, ...); `KafkaSettings.topics` maps
each to a physical name and a partition count, and `prefix` is put before every topic and
group name (several deployments, or tests, on one cluster). A topic is created with the
AdminClient the first time it is used, with its configured partitions (`default_partitions`
for a name not in the table).

Publishing: one idempotent producer per bus (`enable.idempotence`, so `acks=all` and no
duplicates or reordering from its own retries). Messages are canonical JSON, keyed by run id
(so one run's messages stay in one partition, in order), and carry an `aobc-id` header: a
unique id per message (or the one given: the outbox relay gives the outbox row's id), so a
consumer can drop a duplicate delivery. `publish` returns once the broker has the message.
Topics in `KafkaSettings.spread` (the distributed runtime's job topics) keep the key but are
partitioned by message id, so that one run's ready nodes spread over all the workers.

Consuming: `subscribe(topic, group)` joins the Kafka consumer group `{prefix}{group}@{topic}`
(one group per topic, so a member joining one topic does not pause the others while the group
rebalances). Each subscription has its own consumer, polled by its own thread, which keeps the
membership alive however slowly the subscriber reads, and pauses fetching when its buffer is
full. Offsets are committed manually, only for messages handed over and done:

- `commit="on_next"` (the default): a message is done when the subscriber asks for the next
  one, so a subscriber that dies mid-message gets it again (at least once);
- `commit="manual"`: the subscriber calls `ack(delivery)` (from `next_delivery()`), in any
  order; the committed offset is the end of the acknowledged prefix of each partition (a
  worker running several jobs at once).

A new group starts at the earliest offset (`new_group_offset`), so a message published after
`subscribe` returns reaches the group even though Kafka assigns partitions a moment later. The
subscribers of one group in one process hand out nothing while any of them is between
assignments, so that while the membership is stable, each key's messages go to one of them,
in order. When membership changes, a partition moves with its committed offset: what its
previous owner had taken but not finished is delivered again.

A message that is not JSON (a poison message) goes to the dead-letter topic `{topic}.dead`
with an `aobc-reason` header, and the partition keeps moving; `dead_letter(delivery, reason)`
does the same for a message the subscriber cannot handle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import confluent_kafka
import msgspec
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from aobc.canonical import canonical_bytes

log = logging.getLogger("aobc.kafka")
_decode = msgspec.json.Decoder().decode

ID_HEADER: Final = "aobc-id"
REASON_HEADER: Final = "aobc-reason"
SOURCE_HEADER: Final = "aobc-source"  # topic/partition/offset a dead letter came from
DEAD_LETTER_SUFFIX: Final = ".dead"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str  # the physical name, before the prefix
    partitions: int


#: The runtime's topics (see DESIGN.md); deployments rename them or change their partitions.
DEFAULT_TOPICS: Final[Mapping[str, TopicSpec]] = {
    name: TopicSpec(name, 12)
    for name in (
        "workflow.events",
        "node.jobs.high",
        "node.jobs.medium",
        "node.jobs.low",
        "node.results",
        "agent.jobs",
        "agent.results",
    )
}


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka and how to use it. The consumer timeouts matter: a member joins its
    group only after a rebalance, which on some brokers (Tansu) takes half the session
    timeout; tests use `session_timeout_ms=1000`."""

    bootstrap: str  # host:port[,host:port...]
    prefix: str = ""
    topics: Mapping[str, TopicSpec] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    default_partitions: int = 6
    replication_factor: int = -1  # the broker's default
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 300_000
    new_group_offset: Literal["earliest", "latest"] = "earliest"
    # Topics whose messages are partitioned by their `aobc-id` rather than their key (which
    # stays as given): for messages that need no order among one key's. The coordinator and
    # workers spread the job topics (`JOB_TOPICS`): keyed by run, one run's jobs would all go
    # to the one worker that holds the run's partition.
    spread: frozenset[str] = frozenset()
    # How long the producer waits to fill a batch. 0: a message goes out at once, and under
    # load batches form anyway behind the requests in flight (5 per connection).
    linger_ms: float = 0.0
    # How long the broker holds a fetch. Tansu holds it this long even when messages arrive,
    # so a message waits about half of it there (publish-to-receive p50: ~2 ms at 1 ms,
    # ~10 ms at 20, ~50 ms at 100); its CPU cost on Tansu is per consumer (~10% of a core
    # each here) and barely depends on it. Kafka answers as soon as data arrives.
    fetch_wait_max_ms: int = 2
    delivery_timeout_ms: int = 30_000  # a message not acknowledged by then fails
    consumer_buffer: int = 1000  # messages fetched ahead per subscription before pausing
    poll_interval: float = 0.05  # the poll thread's wait; commits go out at least this often
    producer_config: Mapping[str, Any] = field(default_factory=dict)  # librdkafka overrides
    consumer_config: Mapping[str, Any] = field(default_factory=dict)

    def physical(self, topic: str) -> str:
        spec = self.topics.get(topic)
        return self.prefix + (spec.name if spec is not None else topic)

    def partitions(self, topic: str) -> int:
        spec = self.topics.get(topic)
        return spec.partitions if spec is not None else self.default_partitions


def bootstrap_from_url(url: str) -> str:
    """`kafka://h1:9092,h2:9092` (or plain `h1:9092,...`) -> `h1:9092,h2:9092`."""
    return url.removeprefix("kafka://").rstrip("/")


class KafkaBusError(RuntimeError):
    """Kafka refused a message, or did not acknowledge it within the delivery timeout."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a subscriber, with where it came from."""

    message: dict[str, Any]
    key: str | None
    topic: str  # logical
    partition: int
    offset: int
    id: str | None  # the `aobc-id` header: equal ids are one message delivered twice
    generation: int  # the assignment it came with (a later ack of an old one is ignored)
    raw: bytes = b""


def _text(value: str | bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _where(message: confluent_kafka.Message) -> tuple[int, int]:
    """(partition, offset) of a message that came from a fetch (both are set then)."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return partition, offset


def _headers(message: confluent_kafka.Message) -> dict[str, str]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {name: _text(value) or "" for name, value in pairs}


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class KafkaBus:
    """A `Bus` on Kafka; see the module docstring. Thread-safe; `publish` may be awaited from
    any event loop."""

    def __init__(self, settings: KafkaSettings | str) -> None:
        if isinstance(settings, str):
            settings = KafkaSettings(bootstrap_from_url(settings))
        self.settings = settings
        common: dict[str, Any] = {
            "bootstrap.servers": settings.bootstrap,
            "logger": log,
            # Small requests, each waited for: Nagle's algorithm would hold them back.
            "socket.nagle.disable": True,
        }
        self._admin = AdminClient(dict(common))
        self._producer = confluent_kafka.Producer(
            {
                **common,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": settings.linger_ms,
                "message.timeout.ms": settings.delivery_timeout_ms,
                "error_cb": self._on_error,
                **settings.producer_config,
            }
        )
        self._known_topics: set[str] = set()
        self._topics_lock = threading.Lock()
        self._groups: dict[str, list[KafkaSubscription]] = {}
        self._groups_lock = threading.Lock()
        self._closed = False
        self._poller = threading.Thread(target=self._poll_producer, name="aobc-kafka-producer")
        self._poller.daemon = True
        self._poller.start()

    # -- topics -------------------------------------------------------------------------------

    def ensure_topics(self, topics: Iterable[str], timeout: float = 30.0) -> None:
        """Create the (logical) topics that do not exist yet, with their partitions."""
        self._ensure(
            {self.settings.physical(t): self.settings.partitions(t) for t in topics}, timeout
        )

    def _ensure(self, partitions: Mapping[str, int], timeout: float = 30.0) -> None:
        """Create these physical topics, unless known to exist."""
        with self._topics_lock:
            missing = {n: count for n, count in partitions.items() if n not in self._known_topics}
            if not missing:
                return
            futures = self._admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=count,
                        replication_factor=self.settings.replication_factor,
                    )
                    for name, count in missing.items()
                ],
                operation_timeout=timeout,
                request_timeout=timeout,
            )
            for name, future in futures.items():
                try:
                    future.result(timeout)
                except confluent_kafka.KafkaException as err:
                    if err.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                        raise KafkaBusError(f"cannot create topic {name!r}: {err}") from err
                self._known_topics.add(name)

    def delete_topics(self, topics: Iterable[str], timeout: float = 30.0) -> None:
        """Delete (logical) topics and their dead-letter topics, if they exist (tests)."""
        names = [self.settings.physical(t) for t in topics]
        names += [n + DEAD_LETTER_SUFFIX for n in names]
        futures = self._admin.delete_topics(names, operation_timeout=timeout)
        for future in futures.values():
            with contextlib.suppress(confluent_kafka.KafkaException):
                future.result(timeout)
        with self._topics_lock:
            self._known_topics.difference_update(names)

    # -- publishing -----------------------------------------------------------------------------

    def _poll_producer(self) -> None:
        # Delivery reports (and errors) are served by poll(); it returns as soon as one is due.
        while not self._closed:
            self._producer.poll(0.1)

    @staticmethod
    def _on_error(err: confluent_kafka.KafkaError) -> None:
        log.warning("kafka: %s", err)

    def produce(
        self,
        topic: str,
        key: str | None,
        value: bytes,
        *,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
        physical: bool = False,
    ) -> concurrent.futures.Future[None]:
        """Send one message (already encoded) without waiting: the future resolves once the
        broker has it, or fails with KafkaBusError. Messages produced one after another to
        one key arrive in that order."""
        if self._closed:
            raise RuntimeError("bus is closed")
        if physical:
            name = topic
            self._ensure({name: self.settings.default_partitions})
        else:
            name = self.settings.physical(topic)
            self.ensure_topics([topic])
        message_id = id or uuid.uuid4().hex
        extra: dict[str, Any] = {}
        if not physical and topic in self.settings.spread:
            # Spread by message id, not by key: one run's jobs go to every worker.
            extra["partition"] = zlib.crc32(message_id.encode()) % self.settings.partitions(topic)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def report(err: confluent_kafka.KafkaError | None, _msg: Any) -> None:
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(KafkaBusError(f"kafka refused a message to {name!r}: {err}"))

        all_headers: dict[str, str | bytes | None] = {ID_HEADER: message_id, **(headers or {})}
        while True:
            try:
                self._producer.produce(
                    name, value=value, key=key, headers=all_headers, on_delivery=report, **extra
                )
                return done
            except BufferError:  # the local queue is full: wait for deliveries to drain it
                time.sleep(0.001)

    def produce_batch(
        self,
        messages: Sequence[tuple[str, str | None, bytes, str | None]],
        *,
        timeout: float | None = None,
    ) -> list[BaseException | None]:
        """Send (topic, key, value, id) messages and wait for every acknowledgement: the
        error of each one, or None. For the outbox relay."""
        futures = [self.produce(t, k, v, id=i) for t, k, v, i in messages]
        wait = self.settings.delivery_timeout_ms / 1000 + 5 if timeout is None else timeout
        concurrent.futures.wait(futures, timeout=wait)
        results: list[BaseException | None] = []
        for future in futures:
            if not future.done():
                results.append(KafkaBusError(f"no acknowledgement within {wait:.1f} s"))
            else:
                results.append(future.exception())
        return results

    async def publish(self, topic: str, key: str, message: dict[str, Any]) -> None:
        await asyncio.wrap_future(self.produce(topic, key, canonical_bytes(message)))

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every message sent to be acknowledged; returns how many are left."""
        left: int = self._producer.flush(timeout)
        return left

    # -- consuming ------------------------------------------------------------------------------

    def subscribe(
        self,
        topic: str,
        group: str,
        *,
        commit: Literal["on_next", "manual"] = "on_next",
        dedup: int = 0,
    ) -> KafkaSubscription:
        """Join `group` on `topic`. With `dedup=N`, a message whose `aobc-id` is among the last
        N ids this subscription saw is dropped (and counted done): a redelivery after a
        producer or relay retry. Across processes, deduplicate durably (the Postgres log's
        `claim`)."""
        if self._closed:
            raise RuntimeError("bus is closed")
        self.ensure_topics([topic])
        subscription = KafkaSubscription(self, topic, group, commit, dedup)
        with self._groups_lock:
            self._groups.setdefault(subscription.group_id, []).append(subscription)
        subscription._start()
        return subscription

    def _settled(self, group_id: str) -> bool:
        """Every member of this group in this process has its partitions (none is between a
        revocation and an assignment)."""
        with self._groups_lock:
            return all(member._assigned for member in self._groups.get(group_id, []))

    def _group_changed(self, group_id: str) -> None:
        with self._groups_lock:
            members = list(self._groups.get(group_id, []))
        for member in members:
            member._notify()

    def _leave(self, subscription: KafkaSubscription) -> None:
        with self._groups_lock:
            members = self._groups.get(subscription.group_id, [])
            if subscription in members:
                members.remove(subscription)
            if not members:
                self._groups.pop(subscription.group_id, None)
        self._group_changed(subscription.group_id)

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": s.bootstrap,
            "logger": log,
            "socket.nagle.disable": True,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": s.new_group_offset,
            "session.timeout.ms": s.session_timeout_ms,
            "heartbeat.interval.ms": s.heartbeat_interval_ms,
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "fetch.wait.max.ms": s.fetch_wait_max_ms,
            # Eager rebalancing: every member gives up all its partitions before any member
            # gets new ones, which is what keeps a key with one member at a time.
            "partition.assignment.strategy": "roundrobin",
            "error_cb": self._on_error,
            **s.consumer_config,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Leave every group (committing what is done) and send what is still queued."""
        with self._groups_lock:
            members = [m for group in self._groups.values() for m in group]
        close_all(members)
        if not self._closed:
            self._producer.flush(timeout)
            self._closed = True
            self._poller.join()


def close_all(subscriptions: Iterable[KafkaSubscription]) -> None:
    """Close subscriptions together: each leaving its group makes the others rebalance, so
    they all stop polling first, then leave at about the same moment."""
    subscriptions = list(subscriptions)
    for subscription in subscriptions:
        subscription._closing = True
    for subscription in subscriptions:
        subscription.close()


class RecentIds:
    """The last `size` message ids seen, for dropping redeliveries (not thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, message_id: str) -> bool:
        """Remember `message_id`; False if it was already remembered."""
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return False
        self._ids[message_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


class KafkaSubscription(AsyncIterator[dict[str, Any]]):
    """One member of a consumer group; see the module docstring. Read it from one task at a
    time, and close it when done (or use `async with`)."""

    def __init__(
        self,
        bus: KafkaBus,
        topic: str,
        group: str,
        commit: Literal["on_next", "manual"],
        dedup: int = 0,
    ) -> None:
        if commit not in ("on_next", "manual"):
            raise ValueError(f"commit must be 'on_next' or 'manual', not {commit!r}")
        self.topic = topic
        self.group = group
        self.commit_mode = commit
        self._bus = bus
        self._physical = bus.settings.physical(topic)
        self.group_id = f"{bus.settings.prefix}{group}@{self._physical}"
        self._consumer = confluent_kafka.Consumer(bus.consumer_config(self.group_id))
        self._lock = threading.Lock()
        # Guarded by _lock: shared between the poll thread and the reader.
        self._buffer: deque[confluent_kafka.Message] = deque()
        self._assigned = False
        self._generation = 0
        self._partitions: set[int] = set()
        self._handed: dict[int, deque[int]] = {}  # partition -> offsets handed over, in order
        self._acked: set[tuple[int, int]] = set()
        self._done: dict[int, int] = {}  # partition -> next offset to commit
        self._committed: dict[int, int] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._previous: Delivery | None = None  # on_next: done when the next is asked for
        self._recent = RecentIds(dedup) if dedup > 0 else None
        self._listeners: list[Callable[[], None]] = []  # told, from any thread, of news
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"aobc-kafka-{self.group_id}")
        self._thread.daemon = True

    def _start(self) -> None:
        self._consumer.subscribe(
            [self._physical],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._thread.start()

    # -- the poll thread ------------------------------------------------------------------------

    def _run(self) -> None:
        paused = False
        batch = max(1, self._bus.settings.consumer_buffer)
        try:
            while not self._closing:
                self._commit(asynchronous=True)
                with self._lock:
                    room = batch - len(self._buffer)
                    partitions = set(self._partitions)
                if room <= 0 and not paused:
                    self._consumer.pause(self._topic_partitions(partitions))
                    paused = True
                elif room >= batch // 2 and paused:
                    self._consumer.resume(self._topic_partitions(partitions))
                    paused = False
                first = self._consumer.poll(self._bus.settings.poll_interval)
                if first is None:
                    continue
                messages = [first]
                if room > 1:  # what has already been fetched, without waiting for more
                    messages += self._consumer.consume(num_messages=room - 1, timeout=0)
                self._receive(messages)
        except Exception:  # the consumer is unusable: end the subscription, loudly
            log.exception("kafka subscription %s failed", self.group_id)
        finally:
            try:
                self._commit(asynchronous=False)
                self._consumer.close()  # leaves the group at once
            except Exception:
                log.exception("kafka subscription %s: close failed", self.group_id)
            self._closing = True
            self._notify()

    def _receive(self, messages: list[confluent_kafka.Message]) -> None:
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                log.warning("kafka subscription %s: %s", self.group_id, error)
        if good:
            with self._lock:
                self._buffer.extend(m for m in good if m.partition() in self._partitions)
            self._notify()

    def _topic_partitions(
        self, partitions: Iterable[int], offsets: Mapping[int, int] | None = None
    ) -> list[confluent_kafka.TopicPartition]:
        if offsets is None:
            return [confluent_kafka.TopicPartition(self._physical, p) for p in partitions]
        return [confluent_kafka.TopicPartition(self._physical, p, offsets[p]) for p in partitions]

    def _commit(self, *, asynchronous: bool, only: set[int] | None = None) -> None:
        with self._lock:
            due = {
                p: o
                for p, o in self._done.items()
                if self._committed.get(p) != o and p in self._partitions
                if only is None or p in only
            }
            self._committed.update(due)
        if due:
            offsets = self._topic_partitions(due, due)
            try:
                if asynchronous:
                    self._consumer.commit(offsets=offsets, asynchronous=True)
                else:
                    self._consumer.commit(offsets=offsets, asynchronous=False)
            except confluent_kafka.KafkaException as err:  # redelivered later: at least once
                log.warning("kafka subscription %s: commit failed: %s", self.group_id, err)

    def _on_assign(self, _consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        with self._lock:
            self._generation += 1
            self._partitions = {tp.partition for tp in partitions}
            self._assigned = True
        self._bus._group_changed(self.group_id)

    def _on_revoke(self, _consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        # Commit what is done before the partitions move, so the next owner starts after it.
        self._commit(asynchronous=False, only=revoked)
        with self._lock:
            self._generation += 1
            self._buffer = deque(m for m in self._buffer if m.partition() not in revoked)
            self._partitions -= revoked
            for p in revoked:
                self._handed.pop(p, None)
                self._done.pop(p, None)
                self._committed.pop(p, None)
            self._acked = {(p, o) for p, o in self._acked if p not in revoked}
            self._assigned = False
        self._bus._group_changed(self.group_id)

    # -- the reader -----------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake the reader, from any thread."""
        with self._lock:
            waiter = self._waiter
            listeners = list(self._listeners)
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                waiter.get_loop().call_soon_threadsafe(_set_result, waiter)
        for listener in listeners:
            listener()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def buffered(self) -> int:
        """Messages fetched and not yet handed over."""
        with self._lock:
            return len(self._buffer)

    def try_next(self) -> Delivery | None:
        """The next message if one is ready now, else None (never waits). As
        `next_delivery`, it marks the previous one done in "on_next" mode."""
        if self._previous is not None and self.commit_mode == "on_next":
            self.ack(self._previous)
            self._previous = None
        while (message := self._take()) is not None:
            delivery = self._delivery(message)
            if delivery is not None:
                if self.commit_mode == "on_next":
                    self._previous = delivery
                return delivery
        return None

    def _take(self) -> confluent_kafka.Message | None:
        """The next message, if there is one and the group is settled; registers it."""
        if not self._bus._settled(self.group_id):
            return None
        with self._lock:
            if not self._buffer:
                return None
            message = self._buffer.popleft()
            partition, offset = _where(message)
            self._handed.setdefault(partition, deque()).append(offset)
            return message

    async def next_delivery(self) -> Delivery:
        """The next message with its origin. In "on_next" mode, asking for it marks the
        previous one done."""
        if self._previous is not None and self.commit_mode == "on_next":
            self.ack(self._previous)
            self._previous = None
        while True:
            message = self._take()
            if message is None:
                if self._closing:
                    raise StopAsyncIteration
                await self._wait()
                continue
            delivery = self._delivery(message)
            if delivery is None:
                continue  # a poison message, now in the dead-letter topic
            if self.commit_mode == "on_next":
                self._previous = delivery
            return delivery

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._lock:
            if self._waiter is not None:
                raise RuntimeError("a subscription is read by one task at a time")
            self._waiter = waiter
            ready = bool(self._buffer) or self._closing
        try:
            # Checked after registering, so a wake-up in between is not lost.
            if not ready or not self._bus._settled(self.group_id):
                await waiter
        finally:
            with self._lock:
                self._waiter = None

    def _delivery(self, message: confluent_kafka.Message) -> Delivery | None:
        """The delivery of a fetched message; None for a poison message (dead-lettered) or a
        duplicate (dropped), both counted done."""
        headers = _headers(message)
        message_id = headers.get(ID_HEADER)
        partition, offset = _where(message)
        value = message.value() or b""
        with self._lock:
            generation = self._generation
        if self._recent is not None and message_id is not None:
            if not self._recent.add(message_id):
                log.info("kafka %s: dropped duplicate message %s", self.group_id, message_id)
                self._ack(partition, offset, generation)
                return None
        try:
            body = _decode(value)
            if not isinstance(body, dict):
                raise ValueError("a message must be a JSON object")
        except (msgspec.DecodeError, ValueError) as err:
            self._dead_letter_raw(message, headers, f"not a JSON object: {err}")
            self._ack(partition, offset, generation)
            return None
        return Delivery(
            message=body,
            key=_text(message.key()),
            topic=self.topic,
            partition=partition,
            offset=offset,
            id=message_id,
            generation=generation,
            raw=value,
        )

    def _dead_letter_raw(
        self, message: confluent_kafka.Message, headers: Mapping[str, str], reason: str
    ) -> None:
        partition, offset = _where(message)
        future = self._bus.produce(
            self._physical + DEAD_LETTER_SUFFIX,
            _text(message.key()),
            message.value() or b"",
            id=headers.get(ID_HEADER),
            headers={
                REASON_HEADER: reason,
                SOURCE_HEADER: f"{self._physical}/{partition}/{offset}",
            },
            physical=True,
        )
        future.result()  # the message is in the dead-letter topic before its offset moves
        log.warning(
            "kafka %s: message %s/%s sent to %s: %s",
            self.group_id,
            partition,
            offset,
            self._physical + DEAD_LETTER_SUFFIX,
            reason,
        )

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message the subscriber cannot handle to `{topic}.dead`, with the reason,
        and count it done."""
        await asyncio.wrap_future(
            self._bus.produce(
                self._physical + DEAD_LETTER_SUFFIX,
                delivery.key,
                delivery.raw,
                id=delivery.id,
                headers={
                    REASON_HEADER: reason,
                    SOURCE_HEADER: f"{self._physical}/{delivery.partition}/{delivery.offset}",
                },
                physical=True,
            )
        )
        self.ack(delivery)
        if self._previous is delivery:
            self._previous = None

    def ack(self, delivery: Delivery) -> None:
        """Count a delivered message done: its offset is committed once every earlier message
        of its partition is done too."""
        self._ack(delivery.partition, delivery.offset, delivery.generation)

    def _ack(self, partition: int, offset: int, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # the partition moved since: the new owner has it
            self._acked.add((partition, offset))
            handed = self._handed.get(partition)
            while handed and (partition, handed[0]) in self._acked:
                done = handed.popleft()
                self._acked.discard((partition, done))
                self._done[partition] = done + 1

    def __aiter__(self) -> KafkaSubscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return (await self.next_delivery()).message

    def close(self) -> None:
        """Leave the group, committing what is done; what was handed over and not done is
        delivered again to the group's other members."""
        self._closing = True
        if self._thread.ident is not None:
            self._thread.join()
        self._bus._leave(self)
        self._notify()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> KafkaSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- priorities -------------------------------------------------------------------------------------

#: The job topics, most urgent first.
JOB_TOPICS: Final = ("node.jobs.high", "node.jobs.medium", "node.jobs.low")


class PriorityConsumer:
    """Takes jobs from several subscriptions, most urgent first, without starving the others.

    Strict priority with a bound: the first subscription with a ready message wins, except
    that a subscription with messages waiting that has been passed over `starve_after` times
    in a row wins next. With `starve_after=4` and every queue full, the low queue still gets
    at least one message in five picks (and medium likewise against high); when the urgent
    queues are empty, the others get everything.

    The subscriptions commit manually: a message is taken from each ready subscription
    ahead of its turn, so "done when the next is asked for" would be wrong. The caller calls
    `ack` once a job's result is durable.

    Read from one task; `close()` closes the subscriptions.
    """

    def __init__(self, subscriptions: Sequence[KafkaSubscription], starve_after: int = 4) -> None:
        if not subscriptions:
            raise ValueError("a priority consumer needs at least one subscription")
        if starve_after < 1:
            raise ValueError("starve_after must be at least 1")
        if any(s.commit_mode != "manual" for s in subscriptions):
            raise ValueError("a priority consumer's subscriptions must use commit='manual'")
        self.subscriptions = list(subscriptions)
        self.starve_after = starve_after
        self._passed = [0] * len(self.subscriptions)  # picks lost in a row, with work waiting
        self._pending: list[Delivery | None] = [None] * len(self.subscriptions)
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        for subscription in self.subscriptions:
            with subscription._lock:
                subscription._listeners.append(self._wake)

    @classmethod
    def for_jobs(
        cls,
        bus: KafkaBus,
        group: str,
        priorities: Sequence[str] = ("high", "medium", "low"),
        **options: Any,
    ) -> PriorityConsumer:
        """Subscribe `group` to `node.jobs.<priority>` for each priority, in that order (the
        options go to `KafkaBus.subscribe`; `commit` is "manual")."""
        known = {topic.rsplit(".", 1)[1]: topic for topic in JOB_TOPICS}
        unknown = [p for p in priorities if p not in known]
        if unknown:
            raise ValueError(f"unknown priorities {unknown}; choose from {list(known)}")
        starve_after = options.pop("starve_after", 4)
        options["commit"] = "manual"
        subscriptions = [bus.subscribe(known[p], group, **options) for p in priorities]
        return cls(subscriptions, starve_after)

    def _wake(self) -> None:
        waiter, loop = self._waiter, self._loop
        if waiter is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_set_result, waiter)

    def _fill(self) -> None:
        for i, subscription in enumerate(self.subscriptions):
            if self._pending[i] is None:
                self._pending[i] = subscription.try_next()

    def _pick(self) -> int | None:
        ready = [i for i, delivery in enumerate(self._pending) if delivery is not None]
        if not ready:
            return None
        starved = [i for i in ready if self._passed[i] >= self.starve_after]
        chosen = starved[-1] if starved else ready[0]  # the longest-waiting kind: least urgent
        for i in ready:
            self._passed[i] = 0 if i == chosen else self._passed[i] + 1
        return chosen

    def try_next(self) -> Delivery | None:
        """The next job if one is ready now, else None (never waits)."""
        self._fill()
        chosen = self._pick()
        if chosen is None:
            return None
        delivery = self._pending[chosen]
        self._pending[chosen] = None
        return delivery

    async def next_delivery(self) -> Delivery:
        """The next job to run; `ack` it once its result is durable."""
        self._loop = asyncio.get_running_loop()
        while True:
            delivery = self.try_next()
            if delivery is not None:
                return delivery
            if all(s.closed for s in self.subscriptions):
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                self._fill()  # news that came while registering
                if all(p is None for p in self._pending):
                    await self._waiter
            finally:
                self._waiter = None

    def ack(self, delivery: Delivery) -> None:
        self.subscription(delivery).ack(delivery)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self.subscription(delivery).dead_letter(delivery, reason)

    def subscription(self, delivery: Delivery) -> KafkaSubscription:
        """The subscription a delivery came from (to `ack` or `dead_letter` it)."""
        for subscription in self.subscriptions:
            if subscription.topic == delivery.topic:
                return subscription
        raise KeyError(delivery.topic)

    def __aiter__(self) -> PriorityConsumer:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return (await self.next_delivery()).message

    def close(self) -> None:
        close_all(self.subscriptions)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
