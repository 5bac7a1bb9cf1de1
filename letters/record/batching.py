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

The batch function gets the items' tickets in arrival order and answers each one. It may
answer an item early and wait until its submitter has finished what the answer asked of
it (`Ticket.finished`) before it goes on: a confirmation with follow-ups is counted by
its own request, and the batch after it must count after it. If the function raises,
every item it has not answered gets the exception (each request then answers as it
would have alone: letters.db.retrying runs it again on a lost connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# How long a batch waits for a submitter to finish what its answer asked of it, at most.
FINISH_SECONDS = 10.0


@dataclass
class Ticket(Generic[ItemT, ResultT]):
    """One item in a queue, and the way its answer reaches its submitter."""

    item: ItemT
    future: asyncio.Future[ResultT]
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, result: ResultT) -> None:
        if not self.future.done():
            self.future.set_result(result)

    async def finished(self) -> None:
        """Wait until the submitter has left its turn (or FINISH_SECONDS have passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), FINISH_SECONDS)


@dataclass
class _Queue(Generic[ItemT, ResultT]):
    key: Hashable
    waiting: list[Ticket[ItemT, ResultT]] = field(default_factory=list)


class Batcher(Generic[ItemT, ResultT]):
    """Runs `run(key, tickets)` for the items submitted under one key, in batches of at
    most `most`; two items with the same `distinct(item)` never share a batch."""

    def __init__(
        self,
        run: Callable[[Hashable, list[Ticket[ItemT, ResultT]]], Awaitable[None]],
        distinct: Callable[[ItemT], Hashable],
        most: int = 64,
    ) -> None:
        self._run = run
        self._distinct = distinct
        self._most = most
        self._queues: dict[Hashable, _Queue[ItemT, ResultT]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable, item: ItemT) -> AsyncIterator[ResultT]:
        """`async with batcher.turn(key, item) as result:` the item's answer; the batch
        that answered may wait for the block to end before it goes on."""
        loop = asyncio.get_running_loop()
        ticket: Ticket[ItemT, ResultT] = Ticket(item, loop.create_future())
        # A queue belongs to one event loop (its futures do).
        queue = self._queues.get((key, loop))
        if queue is None:
            queue = self._queues[key, loop] = _Queue(key)
            task = loop.create_task(self._drain((key, loop), queue))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)
        queue.waiting.append(ticket)
        try:
            # Shielded: a request that goes away (the client left) leaves its item to the
            # batch, as a statement already sent would be.
            yield await asyncio.shield(ticket.future)
        finally:
            ticket.done.set()

    def _take(self, queue: _Queue[ItemT, ResultT]) -> list[Ticket[ItemT, ResultT]]:
        batch: list[Ticket[ItemT, ResultT]] = []
        seen: set[Hashable] = set()
        left: list[Ticket[ItemT, ResultT]] = []
        for ticket in queue.waiting:
            key = self._distinct(ticket.item)
            if len(batch) < self._most and key not in seen:
                seen.add(key)
                batch.append(ticket)
            else:
                left.append(ticket)
        queue.waiting = left
        return batch

    async def _drain(self, key: Hashable, queue: _Queue[ItemT, ResultT]) -> None:
        batch: list[Ticket[ItemT, ResultT]] = []
        try:
            # Let the requests that are ready in this turn of the loop join the first batch.
            await asyncio.sleep(0)
            while queue.waiting:
                batch = self._take(queue)
                try:
                    await self._run(queue.key, batch)
                    unanswered: Exception = RuntimeError("the batch left an item unanswered")
                except Exception as error:  # each request answers for its own item
                    unanswered = error
                for ticket in batch:
                    if not ticket.future.done():
                        ticket.future.set_exception(unanswered)
        finally:
            # No await between the last look at `waiting` and here, so nothing new is
            # left behind; only a cancelled drain (the loop closing) leaves items undone.
            del self._queues[key]
            for ticket in batch + queue.waiting:
                ticket.future.cancel()
