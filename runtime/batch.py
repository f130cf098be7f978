"""`Batch`: one call for the items submitted in one turn of the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batch(Generic[T, R]):
    """Calls `run(items)` once for every item submitted in one turn of the event loop (the
    jobs that reach the same step together share one statement; a lone job waits for
    nothing: the call runs as soon as the loop has run what was ready). `run` raising fails
    every item; an exception it returns in an item's place fails that item alone."""

    def __init__(self, run: Callable[[list[T]], list[R]]) -> None:
        self._run = run
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        try:
            results = self._run(items)
        except Exception as err:
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):  # this item's own failure, not the others'
                future.set_exception(result)
            else:
                future.set_result(result)
