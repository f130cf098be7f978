"""Fan-out of run events to live subscribers (the SSE streams), read once from the log.

The event log is the source of truth and its `seq` is each event's id, so a subscriber can
always be served exactly the events after the one it saw last. One `Channel` per watched
run keeps a cursor into the run's log and hands new events to every live subscriber:

- events the engine reports (`offer`) are collected and handed on once per turn of the
  event loop, as one batch (a flush of 3,000 map items is one delivery, not 3,000);
- anything else (a gap, or events another process appended) is read from the log, on a
  `poke` after a command or on the hub's periodic `poll`;
- a new subscriber first reads its backlog from the log, page by page, and goes live
  only once it has caught up with the channel, so a long history never fills its buffer;
- each live subscriber has a bounded buffer. Delivery never waits: a subscriber that still
  holds more than `limit` events from earlier deliveries when the next one comes (its
  client is not reading) is dropped, its buffer freed and a reason set. A slow client can
  never stall a run or other subscribers, and it can reconnect from the last id it saw.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from aobc.runtime.stores.base import Event, EventLog

TERMINAL_EVENTS: Final = frozenset({"run.succeeded", "run.failed", "run.cancelled"})


class Subscriber:
    """One stream's view of a channel: a bounded buffer of batches and a wake-up.

    Batches are shared by every subscriber of the channel; a subscriber only holds
    references to them. It is dropped at a delivery when its client is not reading (more
    than `limit` events still queued and none taken since the previous delivery) or is
    reading too slowly to ever catch up (more than `HARD` times `limit` queued). A burst
    bigger than the limit (one flush of a large map) is accepted by a client that has
    kept up, and drains over the next turns.
    """

    HARD: Final = 8

    def __init__(self, channel: Channel, limit: int) -> None:
        self.channel = channel
        self.limit = limit
        self.live = False  # reading its backlog from the log until it catches up
        self.buffer: deque[list[Event]] = deque()
        self.offset = 0  # events of buffer[0] already taken
        self.queued = 0
        self.progressed = True
        self.dropped: str | None = None
        self.wake = asyncio.Event()

    @property
    def run_id(self) -> str:
        return self.channel.run_id

    def put(self, batch: list[Event]) -> bool:
        """Buffer a batch; False when this subscriber is dropped instead."""
        if self.dropped is not None:
            return False
        if self.queued > self.limit and not self.progressed:
            self.drop(f"the client stopped reading with {self.queued} events unsent")
            return False
        if self.queued > self.HARD * self.limit:
            self.drop(f"the client fell {self.queued} events behind")
            return False
        self.buffer.append(batch)
        self.queued += len(batch)
        self.progressed = False
        self.wake.set()
        return True

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self.buffer.clear()
        self.offset = self.queued = 0
        self.wake.set()

    def take(self, most: int) -> list[Event]:
        """Up to `most` of the oldest buffered events."""
        out: list[Event] = []
        while self.buffer and len(out) < most:
            head = self.buffer[0]
            part = head[self.offset : self.offset + most - len(out)]
            out.extend(part)
            self.offset += len(part)
            if self.offset >= len(head):
                self.buffer.popleft()
                self.offset = 0
        self.queued -= len(out)
        self.progressed = True
        if not self.buffer:
            self.wake.clear()
        return out

    async def wait(self, timeout: float) -> bool:
        """Wait until there is something to take (or a drop); False on timeout."""
        if self.buffer or self.dropped is not None:
            return True
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Channel:
    def __init__(self, log: EventLog, run_id: str) -> None:
        self.log = log
        self.run_id = run_id
        self.cursor = log.last_seq(run_id)  # the last seq handed to subscribers
        self.pending: list[Event] = []  # offered, not yet handed on
        self.gap = False
        self.scheduled = False
        self.subscribers: set[Subscriber] = set()

    @property
    def expected(self) -> int:
        return (self.pending[-1].seq if self.pending else self.cursor) + 1

    def deliver(self, events: list[Event]) -> list[Subscriber]:
        """Hand `events` (the next ones after the cursor) to live subscribers; the dropped."""
        events = [e for e in events if e.seq > self.cursor]
        if not events:
            return []
        self.cursor = events[-1].seq
        dropped = [s for s in self.subscribers if s.live and not s.put(events)]
        for s in dropped:
            self.subscribers.discard(s)
        return dropped

    def flush(self) -> list[Subscriber]:
        self.scheduled = False
        if self.gap:
            self.gap = False
            self.pending = []
            return self.catch_up()
        batch, self.pending = self.pending, []
        return self.deliver(batch)

    def catch_up(self) -> list[Subscriber]:
        self.pending = []
        return self.deliver(self.log.read(self.run_id, after=self.cursor))


class Hub:
    """The channels of every watched run, for one process (used from its event loop)."""

    def __init__(
        self, log: EventLog, *, on_drop: Callable[[Subscriber], None] | None = None
    ) -> None:
        self.log = log
        self.channels: dict[str, Channel] = {}
        self.on_drop = on_drop

    def subscribe(self, run_id: str, limit: int) -> Subscriber:
        channel = self.channels.get(run_id)
        if channel is None:
            channel = self.channels[run_id] = Channel(self.log, run_id)
        sub = Subscriber(channel, limit)
        channel.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        channel = sub.channel
        channel.subscribers.discard(sub)
        if not channel.subscribers and self.channels.get(channel.run_id) is channel:
            del self.channels[channel.run_id]

    def _after(self, channel: Channel, dropped: list[Subscriber]) -> None:
        if not channel.subscribers and self.channels.get(channel.run_id) is channel:
            del self.channels[channel.run_id]
        if self.on_drop is not None:
            for s in dropped:
                self.on_drop(s)

    def offer(self, event: Event) -> None:
        """An event the engine just appended or read: pass it on if anyone watches."""
        channel = self.channels.get(event.run_id)
        if channel is None:
            return
        expected = channel.expected
        if event.seq < expected:
            return
        if event.seq == expected:
            channel.pending.append(event)
        else:
            channel.gap = True
        if not channel.scheduled:
            channel.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, channel)

    def _flush(self, channel: Channel) -> None:
        self._after(channel, channel.flush())

    def poke(self, run_id: str) -> None:
        """Something was appended to `run_id`'s log outside the engine: read it."""
        channel = self.channels.get(run_id)
        if channel is not None:
            self._after(channel, channel.catch_up())

    def poll(self) -> None:
        for channel in list(self.channels.values()):
            self._after(channel, channel.catch_up())

    @property
    def subscriber_count(self) -> int:
        return sum(len(c.subscribers) for c in self.channels.values())

    @property
    def buffered(self) -> int:
        return sum(s.queued for c in self.channels.values() for s in c.subscribers)
