"""`GET /runs/{id}/events`: a run's events as Server-Sent Events.

Wire format, one event per log entry, its `seq` as the SSE id:

    id: 12
    event: node.succeeded
    data: {"run": "r-…", "seq": 12, "type": "node.succeeded", "time": …, "node": "draft", …}

- Resume: a client sends `Last-Event-ID: 12` (or `?after=12`) and gets every event after
  12, in order, once: the backlog from the log, then live events.
- `?node=ID` sends only the events about that node.
- A comment line (`: heartbeat`) after `heartbeat` seconds with nothing written (idle, or
  every event filtered out) keeps proxies and clients from timing out a quiet stream.
- When the run ends, after its last event the stream sends `event: end` (no id) with the
  run's status, and closes.
- A client that falls more than the buffer's size behind is dropped: the stream sends
  `event: dropped` (no id) with the reason and the last id it delivered, and closes; the
  client reconnects with that id and loses nothing. A client that stops reading entirely
  is disconnected after `stall` seconds. Neither ever slows the run or other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from aobc.api.hub import TERMINAL_EVENTS

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from aobc.api.backend import Subscription
    from aobc.api.metrics import Metrics
    from aobc.runtime.stores.base import Event

log = logging.getLogger("aobc.serve")
_encode = msgspec.json.Encoder().encode


def frame(e: Event) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq, e.type.encode(), _encode(e.to_json()))


def control(name: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), _encode(data))


class Stalled(Exception):
    """The client stopped reading."""


class EventStream:
    """An ASGI response that streams one subscription until the run ends or the client goes."""

    def __init__(
        self,
        sub: Subscription,
        *,
        run_id: str,
        node: str | None,
        heartbeat: float,
        stall: float,
        metrics: Metrics,
    ) -> None:
        self.sub = sub
        self.run_id = run_id
        self.node = node
        self.heartbeat = heartbeat
        self.stall = stall
        self.metrics = metrics
        self.last = 0
        self.wrote = 0.0  # loop time of the last write: a filtered stream beats when idle too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
                    ],
                }
            )
            await self._write(send, b"retry: 1000\n\n")
            await self._pump(send, gone)
            await self._write(send, b"", more=False)
        except Stalled:
            log.info("event stream of %s: client stopped reading; disconnected", self.run_id)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.sub.close()

    async def _write(self, send: Send, body: bytes, *, more: bool = True) -> None:
        self.wrote = asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": body, "more_body": more}), self.stall
            )
        except TimeoutError:
            raise Stalled from None

    async def _next(self, gone: asyncio.Event) -> list[Event] | None:
        if gone.is_set():
            return []
        nxt = asyncio.ensure_future(self.sub.next(self.heartbeat))
        stop = asyncio.ensure_future(gone.wait())
        done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done:
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await nxt
            return []
        stop.cancel()
        return nxt.result()

    async def _pump(self, send: Send, gone: asyncio.Event) -> None:
        while True:
            batch = await self._next(gone)
            if gone.is_set():
                return
            if batch is None:
                await self._write(send, b": heartbeat\n\n")
                continue
            if not batch and self.sub.dropped is not None:
                reason = {"reason": self.sub.dropped, "last_event_id": self.last}
                await self._write(send, control("dropped", reason))
                return
            out = []
            end: Event | None = None
            for e in batch:
                if e.seq <= self.last:
                    continue
                self.last = e.seq
                if self.node is None or e.data.get("node") == self.node:
                    out.append(frame(e))
                if e.type in TERMINAL_EVENTS:
                    end = e
            if out:
                await self._write(send, b"".join(out))
                self.metrics.sse_sent.inc(len(out))
            elif asyncio.get_running_loop().time() - self.wrote >= self.heartbeat:
                # `?node=` on a busy run: events flow, none of them for this client.
                await self._write(send, b": heartbeat\n\n")
            if end is not None:
                status = end.type.split(".", 1)[1]
                await self._write(
                    send, control("end", {"status": status, "last_event_id": end.seq})
                )
                return
