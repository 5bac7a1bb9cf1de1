"""Work that arrives together is done together: one queue per key and process.

On the day a letter goes viral, every confirmation of it must take the rows the letter's
confirmations share (its counters and its ledger's head) in turn. Taken once per
confirmation, those rows become the queue: each waiter holds a database connection and
a backend, and the holder competes with all of them for the CPU. `Batcher` keeps that
queue in the process instead, where waiting costs nothing: the first item for a key
starts a batch at once (a lone confirmation waits for nobody); items that arrive while a
batch of that key runs wait, and go together, as one batch, in the next one. So each
process has at most one batch per key in the database at a time, and the shared rows are
taken once per batch rather than once per item: with W processes, at most W - 1
transactions wait for them.

The batch function gets the items in arrival order and returns one result per item; if
it raises, every item of the batch gets the exception (each request then answers as it
would have alone: letters.db.retrying runs it again on a lost connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass
class _Queue(Generic[ItemT, ResultT]):
    key: Hashable
    waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = field(default_factory=list)


class Batcher(Generic[ItemT, ResultT]):
    """Runs `run(key, items)` for the items submitted under one key, in batches of at
    most `most`; two items with the same `distinct(item)` never share a batch."""

    def __init__(
        self,
        run: Callable[[Hashable, list[ItemT]], Awaitable[list[ResultT]]],
        distinct: Callable[[ItemT], Hashable],
        most: int = 64,
    ) -> None:
        self._run = run
        self._distinct = distinct
        self._most = most
        self._queues: dict[Hashable, _Queue[ItemT, ResultT]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: Hashable, item: ItemT) -> ResultT:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        # A queue belongs to one event loop (its futures do).
        queue = self._queues.get((key, loop))
        if queue is None:
            queue = self._queues[key, loop] = _Queue(key)
            task = loop.create_task(self._drain((key, loop), queue))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)
        queue.waiting.append((item, future))
        # Shielded: a request that goes away (the client left) leaves its item to the
        # batch, as a statement already sent would be.
        return await asyncio.shield(future)

    def _take(self, queue: _Queue[ItemT, ResultT]) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        seen: set[Hashable] = set()
        left: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        for waiting in queue.waiting:
            key = self._distinct(waiting[0])
            if len(batch) < self._most and key not in seen:
                seen.add(key)
                batch.append(waiting)
            else:
                left.append(waiting)
        queue.waiting = left
        return batch

    async def _drain(self, key: Hashable, queue: _Queue[ItemT, ResultT]) -> None:
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        try:
            # Let the requests that are ready in this turn of the loop join the first batch.
            await asyncio.sleep(0)
            while queue.waiting:
                batch = self._take(queue)
                try:
                    results = await self._run(queue.key, [item for item, _ in batch])
                except Exception as error:  # each request answers for its own item
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            # No await between the last look at `waiting` and here, so nothing new is
            # left behind; only a cancelled drain (the loop closing) leaves items undone.
            del self._queues[key]
            for _, future in batch + queue.waiting:
                future.cancel()
