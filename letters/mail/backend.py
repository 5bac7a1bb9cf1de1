"""How mail leaves: a message handed to an SMTP server, or printed to the console.

Two channels, never mixed. The site's own mail (signing and manage links, author sign-in,
milestones) goes from MAIL_FROM through SMTP_URL. A letter's delivery to its recipient
goes from DELIVERY_FROM, with the display name its authors chose, through
DELIVERY_SMTP_URL (else SMTP_URL): the employer's mail logs then do not tie the neutral
sender of signing links to the campaign, and a block on the delivery sender cannot block
signing links. `Channels` routes each message by its channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Protocol, TextIO

import aiosmtplib

from letters.settings import Settings, SMTPConfig


class MailError(Exception):
    """The message could not be handed to the mail server."""


SITE = "site"
DELIVERY = "delivery"


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str  # "type/subtype"
    content: str  # text attachments only


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    html: str
    channel: str = SITE
    # Deliveries only: the display name the authors chose (the address is DELIVERY_FROM's),
    # the authors' address for answers, and the files that go with the letter.
    from_name: str = ""
    reply_to: str = ""
    attachments: tuple[Attachment, ...] = ()


class MailBackend(Protocol):
    async def send(self, message: Message) -> None: ...


def build_email(message: Message, mail_from: str) -> EmailMessage:
    """The email as it leaves: from `mail_from` (with the message's display name, if any)."""
    email = EmailMessage()
    address = parseaddr(mail_from)[1] or mail_from
    email["From"] = formataddr((message.from_name, address)) if message.from_name else mail_from
    email["To"] = message.to
    if message.reply_to:
        email["Reply-To"] = message.reply_to
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=address.rsplit("@", 1)[-1] or None)
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        email.add_attachment(
            attachment.content.encode(),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return email


class ConsoleBackend:
    """Development: print each message to the terminal instead of sending it."""

    def __init__(self, mail_from: str, stream: TextIO | None = None) -> None:
        self.mail_from = mail_from
        self.stream = stream

    async def send(self, message: Message) -> None:
        stream = self.stream or sys.stdout
        rule = "-" * 72
        email = build_email(message, self.mail_from)
        extra = f"Reply-To: {message.reply_to}\n" if message.reply_to else ""
        files = "".join(f"[attached: {a.filename}]\n" for a in message.attachments)
        stream.write(
            f"\n{rule}\nFrom: {email['From']}\nTo: {message.to}\n{extra}"
            f"Subject: {message.subject}\n\n{message.text}\n{files}{rule}\n"
        )
        stream.flush()


class SMTPBackend:
    """Hands messages to an SMTP server over connections kept open and reused.

    Each message goes over an idle session if there is one, else a new one (as many at
    once as messages are being sent); afterwards the session waits for the next message,
    up to `keep` idle sessions per process. A session idle for more than MAX_IDLE seconds
    is closed rather than reused (servers drop idle clients). A reused session that fails
    because the server went away is replaced by a new one and the message tried once more
    on it; any other failure closes the session and raises MailError (the outbox retries
    the message later).
    """

    MAX_IDLE = 30.0

    def __init__(self, config: SMTPConfig, mail_from: str, keep: int = 8) -> None:
        self.config = config
        self.mail_from = mail_from
        self.keep = keep
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _take(self) -> aiosmtplib.SMTP | None:
        """An idle session of this event loop (sessions belong to the loop that opened
        them), or None."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._idle = loop, []
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.MAX_IDLE:
                return client
            client.close()
        return None

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.keep:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.use_tls,
            start_tls=config.start_tls,
            timeout=config.timeout,
        )
        await client.connect()
        return client

    async def send(self, message: Message) -> None:
        email = build_email(message, self.mail_from)
        config = self.config
        client = self._take()
        for attempt in (1, 2):
            reused = client is not None
            try:
                if client is None:
                    client = await self._connect()
                await client.send_message(email)
            except (aiosmtplib.SMTPException, OSError) as error:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                client = None
                gone = isinstance(error, aiosmtplib.SMTPServerDisconnected | OSError)
                if reused and gone and attempt == 1:
                    continue
                # The error names the server, never the recipient.
                raise MailError(
                    f"{type(error).__name__} from {config.host}:{config.port}"
                ) from None
            self._give_back(client)
            return


class Channels:
    """Sends each message through its channel's backend; a delivery never goes out through
    the site's, nor site mail through the delivery's."""

    def __init__(self, site: MailBackend, delivery: MailBackend | None) -> None:
        self.site = site
        self.delivery = delivery

    async def send(self, message: Message) -> None:
        if message.channel == SITE:
            await self.site.send(message)
        elif message.channel == DELIVERY and self.delivery is not None:
            await self.delivery.send(message)
        else:
            raise MailError(f"no sender is set up for {message.channel!r} mail (DELIVERY_FROM)")


def _one(smtp: SMTPConfig | None, mail_from: str) -> MailBackend:
    return ConsoleBackend(mail_from) if smtp is None else SMTPBackend(smtp, mail_from)


def make_backend(settings: Settings) -> MailBackend:
    delivery = None
    if settings.delivery_from:
        delivery = _one(settings.delivery_smtp, settings.delivery_from)
    return Channels(_one(settings.smtp, settings.sender), delivery)
