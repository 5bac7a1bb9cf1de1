"""How mail leaves: a message handed to an SMTP server, or printed to the console."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol, TextIO

import aiosmtplib

from letters.settings import Settings, SMTPConfig


class MailError(Exception):
    """The message could not be handed to the mail server."""


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    html: str


class MailBackend(Protocol):
    async def send(self, message: Message) -> None: ...


def build_email(message: Message, mail_from: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = mail_from
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=mail_from.rsplit("@", 1)[-1].strip(">") or None)
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email


class ConsoleBackend:
    """Development: print each message to the terminal instead of sending it."""

    def __init__(self, mail_from: str, stream: TextIO | None = None) -> None:
        self.mail_from = mail_from
        self.stream = stream

    async def send(self, message: Message) -> None:
        stream = self.stream or sys.stdout
        rule = "-" * 72
        stream.write(
            f"\n{rule}\nFrom: {self.mail_from}\nTo: {message.to}\n"
            f"Subject: {message.subject}\n\n{message.text}\n{rule}\n"
        )
        stream.flush()


class SMTPBackend:
    def __init__(self, config: SMTPConfig, mail_from: str) -> None:
        self.config = config
        self.mail_from = mail_from

    async def send(self, message: Message) -> None:
        config = self.config
        try:
            await aiosmtplib.send(
                build_email(message, self.mail_from),
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                timeout=config.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            # The error names the server, never the recipient.
            raise MailError(f"{type(error).__name__} from {config.host}:{config.port}") from None


def make_backend(settings: Settings) -> MailBackend:
    smtp = settings.smtp
    if smtp is None:
        return ConsoleBackend(settings.sender)
    return SMTPBackend(smtp, settings.sender)
