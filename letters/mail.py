"""Mail: messages rendered from `templates/email/`, sent over SMTP or printed to the console."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol, TextIO

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, select_autoescape

from letters import i18n
from letters.settings import PROJECT_ROOT, Settings, SMTPConfig


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


def make_mail_env() -> Environment:
    """Templates for mail: HTML parts are escaped, plain-text parts are not.

    Emails are written in the current language (letters.i18n): that of the request that
    queues them.
    """
    env = Environment(
        loader=FileSystemLoader(PROJECT_ROOT / "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    i18n.install(env)
    return env


def render(
    env: Environment, name: str, to: str, context: dict[str, Any], subject: str | None = None
) -> Message:
    """Render `email/{name}.txt` and `.html`.

    The subject is `subject` if given (instances configure theirs), else the text
    template's first line.
    """
    text = env.get_template(f"email/{name}.txt").render(context)
    first_line, _, body = text.partition("\n")
    html = env.get_template(f"email/{name}.html").render(context)
    return Message(to=to, subject=subject or first_line.strip(), text=body.lstrip("\n"), html=html)


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
