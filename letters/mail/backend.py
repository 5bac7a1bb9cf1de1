"""How mail leaves: a message handed to an SMTP server, or printed to the console.

Two channels, never mixed. The site's own mail (signing and manage links, author sign-in,
milestones) goes from MAIL_FROM through SMTP_URL. A letter's delivery to its recipient
goes from DELIVERY_FROM, with the display name its authors chose, through
DELIVERY_SMTP_URL (else SMTP_URL): the employer's mail logs then do not tie the neutral
sender of signing links to the campaign, and a block on the delivery sender cannot block
signing links. `Channels` routes each message by its channel.

Every email is dated, given its Message-ID and DKIM-signed when it leaves (`wire`), never
when it is queued: a retry can go hours later. The site's own mail says
`Auto-Submitted: auto-generated` (RFC 3834: no out-of-office answers to a no-reply sender).
A delivery does not: it is a letter its authors wrote and chose to send, whose answer is
awaited at its Reply-To. A message is DKIM-signed when its From domain is DKIM_DOMAIN or
under it (what DMARC's relaxed alignment counts); a signature by another domain would not
help it, and would tie a delivery sent from a domain of its own to the site's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Protocol, TextIO

import aiosmtplib
import dkim

from letters.sealing import Keyring
from letters.settings import DKIMConfig, Settings, SMTPConfig

# Headers the DKIM signature covers; From is signed twice so that none can be added.
SIGNED_HEADERS = [
    b"From",
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"Auto-Submitted",
    b"MIME-Version",
    b"Content-Type",
]
# "5.7.1" at the start of a reply's text (RFC 3463); the rest of the text is never kept.
ENHANCED_STATUS = re.compile(r"\A([245]\.\d{1,3}\.\d{1,3})\b")


class MailError(Exception):
    """The message could not be handed to the mail server.

    `reply_code` is the server's SMTP reply code (0 when it gave none: unreachable, timed
    out) and `status` its enhanced status code ("5.7.1", or ""). The reply's text is
    dropped: servers quote the recipient's address in it.
    """

    def __init__(self, description: str, reply_code: int = 0, status: str = "") -> None:
        super().__init__(description)
        self.reply_code = reply_code
        self.status = status


def refusal(error: aiosmtplib.SMTPException) -> tuple[int, str]:
    """The reply code and enhanced status code of a server's refusal, (0, "") if none."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPResponseException) and error.code > 0:
        match = ENHANCED_STATUS.match(error.message.strip())
        return error.code, match.group(1) if match else ""
    return 0, ""


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


def build_email(message: Message, mail_from: str, now: datetime | None = None) -> EmailMessage:
    """The email as it leaves: from `mail_from` (with the message's display name, if any),
    dated `now`, its parts in 7-bit transfer encodings so that no relay re-encodes (and so
    breaks the DKIM signature of) a body."""
    email = EmailMessage(policy=policy.SMTP.clone(cte_type="7bit"))
    address = parseaddr(mail_from)[1] or mail_from
    email["From"] = formataddr((message.from_name, address)) if message.from_name else mail_from
    email["To"] = message.to
    if message.reply_to:
        email["Reply-To"] = message.reply_to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now or datetime.now(UTC))
    # A random id on the sender's domain: no host name, process id or time in it.
    email["Message-ID"] = f"<{secrets.token_hex(16)}@{domain_of(address)}>"
    if message.channel == SITE:
        email["Auto-Submitted"] = "auto-generated"
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


def domain_of(address: str) -> str:
    """An address's domain in lower-case ASCII (IDNA), "localhost" for none."""
    domain = address.rpartition("@")[2].strip().lower() or "localhost"
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def aligned(domain: str, dkim_domain: str) -> bool:
    """Whether a From domain is the DKIM domain or under it (DMARC relaxed alignment,
    without a public suffix list: a DKIM domain of "example.org" covers "mail.example.org")."""
    return domain == dkim_domain or domain.endswith("." + dkim_domain)


def wire(
    message: Message, mail_from: str, signer: DKIMConfig | None, now: datetime | None = None
) -> tuple[str, bytes, bool]:
    """The envelope sender, the message's bytes as sent (DKIM-signed when `signer` covers
    its From domain) and whether it needs SMTPUTF8 (an address outside ASCII)."""
    email = build_email(message, mail_from, now)
    sender = parseaddr(mail_from)[1] or mail_from
    utf8 = not (sender.isascii() and message.to.isascii())
    data = email.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    if signer is not None and aligned(domain_of(sender), signer.domain):
        signature = dkim.sign(
            data,
            signer.selector.encode(),
            signer.domain.encode(),
            signer.private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in SIGNED_HEADERS if h.decode() in email],
        )
        data = signature + data
    return sender, data, utf8


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

    def __init__(
        self,
        config: SMTPConfig,
        mail_from: str,
        keep: int = 8,
        signer: DKIMConfig | None = None,
    ) -> None:
        self.config = config
        self.mail_from = mail_from
        self.keep = keep
        self.signer = signer
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
        sender, data, utf8 = wire(message, self.mail_from, self.signer)
        options = ["SMTPUTF8"] if utf8 else []
        config = self.config
        client = self._take()
        for attempt in (1, 2):
            reused = client is not None
            try:
                if client is None:
                    client = await self._connect()
                await client.sendmail(sender, [message.to], data, mail_options=options)
            except (aiosmtplib.SMTPException, OSError) as error:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                client = None
                gone = isinstance(error, aiosmtplib.SMTPServerDisconnected | OSError)
                if reused and gone and attempt == 1:
                    continue
                # The error names the server and the reply's codes, never the recipient.
                code, status = (
                    refusal(error) if isinstance(error, aiosmtplib.SMTPException) else (0, "")
                )
                said = f" {code} {status}".rstrip() if code else ""
                raise MailError(
                    f"{type(error).__name__}{said} from {config.host}:{config.port}", code, status
                ) from None
            self._give_back(client)
            return


@dataclass(frozen=True)
class Alerting:
    """When the outbox tells the admins that mail is failing (letters.mail.tallies):
    `failures` failed attempts within one clock hour. `base_url` makes the alert's link;
    `keys` seal the alert in the outbox like any email."""

    failures: int
    base_url: str
    keys: Keyring


class Channels:
    """Sends each message through its channel's backend; a delivery never goes out through
    the site's, nor site mail through the delivery's."""

    def __init__(
        self,
        site: MailBackend,
        delivery: MailBackend | None,
        alerting: Alerting | None = None,
    ) -> None:
        self.site = site
        self.delivery = delivery
        self.alerting = alerting

    async def send(self, message: Message) -> None:
        if message.channel == SITE:
            await self.site.send(message)
        elif message.channel == DELIVERY and self.delivery is not None:
            await self.delivery.send(message)
        else:
            raise MailError(f"no sender is set up for {message.channel!r} mail (DELIVERY_FROM)")


def _one(smtp: SMTPConfig | None, mail_from: str, signer: DKIMConfig | None) -> MailBackend:
    if smtp is None:
        return ConsoleBackend(mail_from)
    return SMTPBackend(smtp, mail_from, signer=signer)


def make_backend(settings: Settings) -> MailBackend:
    signer = settings.dkim
    delivery = None
    if settings.delivery_from:
        delivery = _one(settings.delivery_smtp, settings.delivery_from, signer)
    alerting = Alerting(settings.mail_alert_failures, settings.base_url, settings.keys)
    return Channels(_one(settings.smtp, settings.sender, signer), delivery, alerting)
