"""Letters close by themselves on their closing date: each app process checks twice a minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors.drafts import close_due

logger = logging.getLogger("letters.authors")


class Closer:
    """Closes published letters whose closing date has passed, every `interval` seconds.

    Public caches hold a letter for at most CACHE_SECONDS, so it shows as closed at once.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession], interval: float = 30.0) -> None:
        self.maker = maker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="letters-closer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> list[str]:
        async with self.maker() as session:
            return await close_due(session)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as error:  # the database may be briefly away; try again later
                logger.error("closing letters: %s", type(error).__name__)
