"""The loop a worker and an agent runner share: take deliveries with at most `concurrency`
in hand, stop taking when told, then give in-flight work `drain_timeout` seconds and hand
back the rest (cancelled before it acknowledged, so the broker delivers it again)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

D = TypeVar("D")


async def consume(
    next_delivery: Callable[[], Awaitable[D]],
    handle: Callable[[D], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    *,
    concurrency: int,
    drain_timeout: float,
    try_next: Callable[[], D | None] | None = None,
) -> None:
    """Run `handle` on each delivery until `stop` is set or the deliveries end. `try_next`
    returns one already fetched, if any, without suspending: such deliveries start in the
    same turn of the event loop (a worker batches their stored-result checks)."""
    gate = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            await gate.acquire()  # no suspension while there is room
            delivery = try_next() if try_next is not None else None
            if delivery is None:
                taking = asyncio.ensure_future(next_delivery())
                await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    gate.release()
                    break
                try:
                    delivery = taking.result()
                except StopAsyncIteration:
                    break
            task = asyncio.create_task(handle(delivery))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _t: gate.release())
        if running:
            _, late = await asyncio.wait(running, timeout=drain_timeout)
            for task in late:  # handed back: never acknowledged, so delivered again
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    finally:
        stopping.cancel()
