"""Periodic work inside an app process, on one base: the outbox sender (retries, and mail a
crashed process left behind; expired links purged), the job runner (links asked for by
address, prepared on a fixed beat), the closer (letters close on their closing date) and
the launcher (founding rounds launch at their planned time).
`letters worker` runs the sender's work outside the app instead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import accounts
from letters.authors.drafts import close_due
from letters.mail import outbox
from letters.mail.backend import MailBackend, Message
from letters.mail.compose import manage_email
from letters.record import signer_control
from letters.record.founding import launch_due
from letters.record.retention import purge_expired
from letters.sealing import Keyring
from letters.settings import Settings
from letters.tokens import Signer

logger = logging.getLogger("letters.jobs")
Maker = async_sessionmaker[AsyncSession]


class Periodic:
    """Runs `run_once()` every `interval` seconds until stopped. A failed run is logged by
    its exception's type alone (messages can carry data) and tried again next time: the
    database may be briefly away."""

    name = "periodic"

    def __init__(self, maker: Maker, interval: float) -> None:
        self.maker = maker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"letters-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as error:
                logger.error("%s: %s", self.name, type(error).__name__)


def preparer(settings: Settings, maker: Maker) -> outbox.Prepare:
    """What turns each kind of queued job into its email, or into nothing (outbox.Job):
    the sender finds out, after the request was answered, whether there is anything to send.
    """
    signer = Signer(settings.secret_key, settings.keys.older)
    compose_manage = manage_email(settings)

    async def prepare(job: outbox.Job) -> Message | None:
        async with maker() as session:
            if job.kind == signer_control.MANAGE_LINK_JOB:
                return await signer_control.prepare_link(
                    session, job.args, signer, settings, compose_manage
                )
            if job.kind == accounts.SIGN_IN_JOB:
                return await accounts.prepare_link(session, job.args, signer, settings)
        raise ValueError(f"unknown job kind: {job.kind}")

    return prepare


class Mailing(Periodic):
    """Periodic work that sends mail: the backend, the keys that open the outbox, and what
    turns a queued job into its email."""

    def __init__(
        self,
        maker: Maker,
        backend: MailBackend,
        keys: Keyring,
        prepare: outbox.Prepare,
        interval: float,
    ) -> None:
        super().__init__(maker, interval)
        self.backend = backend
        self.keys = keys
        self.prepare = prepare


class Sender(Mailing):
    """Sends what is left in the outbox, and deletes expired links and rate-limit rows.

    Each request sends its own email right after answering (outbox.send_now); this picks
    up retries and messages that a crashed process left behind.
    """

    name = "outbox"

    async def run_once(self) -> outbox.DrainResult:
        result = await outbox.drain(self.maker, self.backend, self.keys, prepare=self.prepare)
        await purge_expired(self.maker)
        return result


class JobRunner(Mailing):
    """Prepares and sends the jobs this process queued (outbox.Job: a manage link, an
    author's sign-in link), every `interval` seconds, never right after a request.

    Whether a job turns into an email depends on whether the address signed (or is an
    author's); run right after the answer, that work would slow this process's next answers
    only for those addresses, and a stopwatch could tell them apart. On a fixed beat it runs
    whatever was asked for since the last one, unrelated to when any request came. A job
    this process never runs (it stopped) is left in the outbox for any sender.
    """

    name = "jobs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting: list[int] = []
        self.running = False  # read with `waiting` (that first) to know when all is done

    def add(self, job_id: int) -> None:
        self.waiting.append(job_id)

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing being done (safe to read from another thread)."""
        return not self.waiting and not self.running

    async def run_once(self) -> outbox.DrainResult:
        result = outbox.DrainResult()
        self.running = True
        try:
            due, self.waiting = self.waiting, []
            for job_id in due:
                result += await outbox.send_now(
                    self.maker, self.backend, self.keys, job_id, self.prepare
                )
        finally:
            self.running = False
        return result


class Closer(Periodic):
    """Closes published letters whose closing date has passed, twice a minute.

    Public caches hold a letter for at most CACHE_SECONDS, so it shows as closed at once.
    """

    name = "closer"

    def __init__(self, maker: Maker, interval: float = 30.0) -> None:
        super().__init__(maker, interval)

    async def run_once(self) -> list[str]:
        async with self.maker() as session:
            return await close_due(session)


class Launcher(Periodic):
    """Launches the drafts whose founding round's launch time has come, twice a minute."""

    name = "launcher"

    def __init__(self, maker: Maker, settings: Settings, interval: float = 30.0) -> None:
        super().__init__(maker, interval)
        self.settings = settings

    async def run_once(self) -> list[str]:
        async with self.maker() as session:
            return await launch_due(session, self.settings)


def in_app(settings: Settings, maker: Maker, backend: MailBackend) -> list[Periodic]:
    """The periodic work an app process runs: closing letters, launching founding rounds,
    and sending mail unless a separate `letters worker` does (MAIL_IN_APP=false)."""
    tasks: list[Periodic] = [Closer(maker), Launcher(maker, settings)]
    if settings.mail_in_app:
        prepare = preparer(settings, maker)
        tasks.append(Sender(maker, backend, settings.keys, prepare, interval=10.0))
        tasks.append(JobRunner(maker, backend, settings.keys, prepare, settings.mail_job_seconds))
    return tasks
