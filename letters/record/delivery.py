"""Delivering a letter, on the record: the signed snapshot of its count at that moment, a
`delivered` entry in its public ledger that holds the snapshot's SHA-256, the delivery's
row, and (by email) the letter sent to its recipient; all in the caller's transaction.

The first statement updates the letter's row, which locks it (PostgreSQL) or runs inside
the database-wide write lock (SQLite) until commit: no signature can be counted between
the snapshot and the entry, so the entry comes right after the ledger the snapshot signed
(its `prev` is the snapshot's head) and the snapshot's counts are those of that moment.

The email carries only what the letter page shows: the text, the counts, the names from
the public reads (letters.record.public), never a hidden name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from joserfc.jwk import ECKey
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.mail import compose, outbox
from letters.mail.backend import Attachment
from letters.markdown import render_markdown
from letters.models import Delivery, DeliveryMethod, LedgerKind, Letter, LetterVersion, Signature
from letters.record import ledger, public, snapshots
from letters.record.public import PUBLIC_STATUSES, LetterNotFound
from letters.settings import Settings
from letters.spreadsheet import to_csv

SNAPSHOT_FILE = "letter-snapshot.jws"
NAMES_FILE = "signed-by-name.csv"
NAMES_IN_BODY = 1000
NAMES_BATCH = 1000


@dataclass(frozen=True)
class ByEmail:
    """Where the delivery goes, and how it presents itself (chosen by the authors)."""

    to: str
    from_name: str
    reply_to: str


@dataclass(frozen=True)
class Handover:
    """What the authors record: to whom, when, how, and which version of the text."""

    recipient: str
    delivered_on: date
    version: int
    email: ByEmail | None = None  # None: in person or by other means

    @property
    def method(self) -> DeliveryMethod:
        return DeliveryMethod.other if self.email is None else DeliveryMethod.email


async def deliver(
    session: AsyncSession,
    letter_id: int,
    handover: Handover,
    text: LetterVersion,
    *,
    key: ECKey,
    settings: Settings,
    author_id: int | None,
    now: datetime,
) -> tuple[Delivery, int | None]:
    """Record a delivery (and queue its email); returns it and the queued email's id.

    `text` is the version handed over (its title and text are sent by email)."""
    await session.exec(update(Letter).where(col(Letter.id) == letter_id).values(updated_at=now))
    letter = await session.get(Letter, letter_id, populate_existing=True)
    if letter is None or letter.status not in PUBLIC_STATUSES:
        raise LetterNotFound
    counts = await public.tally(session, letter)
    token = snapshots.sign(key, snapshots.payload(settings.base_url, letter, counts))
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = await ledger.append(
        session,
        letter_id,
        LedgerKind.delivered,
        organization="",
        named=False,
        name="",
        title="",
        commitment=ledger.NO_SIGNATURE,
        now=now,
        digest=digest,
    )
    email = handover.email
    delivery = Delivery(
        letter_id=letter_id,
        recipient=handover.recipient,
        method=handover.method,
        delivered_on=handover.delivered_on.isoformat(),
        letter_version=handover.version,
        verified_count=counts.verified,
        ledger_seq=entry.seq,
        digest=digest,
        snapshot=token,
        address=email.to if email else "",
        sender_name=email.from_name if email else "",
        reply_to=email.reply_to if email else "",
        author_id=author_id,
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    if email is None:
        return delivery, None
    names = await _public_names(session, letter)
    base = settings.base_url
    context = {
        "title": text.title,
        "body": text.body,
        "body_html": render_markdown(text.body),
        "verified": counts.verified,
        "named": counts.named,
        "hidden": counts.hidden,
        "organizations": counts.organizations,
        "names": names[:NAMES_IN_BODY],
        "more_names": max(0, len(names) - NAMES_IN_BODY),
        "as_of": now.strftime("%Y-%m-%d %H:%M"),
        "letter_url": f"{base}/letters/{letter.slug}",
        "ledger_url": f"{base}/api/letters/{letter.slug}/ledger",
        "reply_to": email.reply_to,
    }
    attachments = [Attachment(SNAPSHOT_FILE, "application/jose", token)]
    if names:
        attachments.append(Attachment(NAMES_FILE, "text/csv", _names_csv(names)))
    message = compose.delivery_email(
        email.to, email.from_name, email.reply_to, context, tuple(attachments)
    )
    outbox_id = await outbox.enqueue(session, settings.keys, message, now, delivery_id=delivery.id)
    return delivery, outbox_id


async def _public_names(session: AsyncSession, letter: Letter) -> list[Signature]:
    """Every name shown on the letter's pages, oldest first (the public read's pages)."""
    names: list[Signature] = []
    after = None
    while True:
        batch, after = await public.named_signatures(session, letter, after, NAMES_BATCH)
        names.extend(batch)
        if after is None:
            return names


def _names_csv(names: Sequence[Signature]) -> str:
    rows = [(row.name, row.title, row.organization) for row in names]
    return to_csv([("name", "title", "organization"), *rows])
