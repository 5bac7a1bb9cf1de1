"""Tables. A verified signature keeps no email address, only a keyed hash of it.

Ids are typed `int`: the database sets them when a row is saved, and the code reads them
only from saved rows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel, col

# Named constraints make SQLite and PostgreSQL migrations identical and reversible.
SQLModel.metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


# Lower-case letters, digits and single hyphens; at most 80 characters.
SLUG_PATTERN = re.compile(r"\A(?=.{1,80}\Z)[a-z0-9]+(?:-[a-z0-9]+)*\Z")


# The "previous hash" of a ledger's first entry.
GENESIS = "0" * 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use letters.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamp(nullable: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable)


class LetterStatus(StrEnum):
    draft = "draft"
    published = "published"
    closed = "closed"


class Letter(SQLModel, table=True):
    """An open letter. Its counters change only in the transaction that verifies a signature."""

    id: int = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(80), nullable=False, unique=True))
    title: str = Field(sa_column=Column(String(200), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: LetterStatus = Field(
        default=LetterStatus.draft, sa_column=Column(String(20), nullable=False)
    )
    ask_title: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    published_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    verified_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    named_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    hidden_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # The public ledger's length and the hash of its last entry (see letters.record.ledger).
    ledger_length: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    ledger_head: str = Field(
        default=GENESIS, sa_column=Column(String(64), nullable=False, server_default=GENESIS)
    )
    # The head before the last entry (what that entry chains on): the statement that appends
    # an entry sets it from the old head, and so returns both (letters.record.signing).
    ledger_prev: str = Field(
        default=GENESIS, sa_column=Column(String(64), nullable=False, server_default=GENESIS)
    )
    # Authors may have names erased this many days after the letter closes (letters purge).
    erase_names_after_days: int | None = Field(default=None, sa_column=Column(Integer))
    names_erased_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    # Authors (letters.authors): the current version of the text, its date and public note;
    # an optional goal and a date after which the letter closes by itself.
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    revised_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    revision_note: str = Field(
        default="", sa_column=Column(String(300), nullable=False, server_default="")
    )
    goal: int | None = Field(default=None, sa_column=Column(Integer))
    closes_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    # The language its authors wrote the title and text in (a BCP 47 tag: "en", "pt-BR"),
    # marked on the page so that browsers and screen readers read it right. This is the
    # original's language: translations, when they come, will be rows of their own.
    language: str = Field(
        default="en", sa_column=Column(String(35), nullable=False, server_default="en")
    )


class AllowedDomain(SQLModel, table=True):
    """A domain whose addresses may sign a letter, and the organization they stand for."""

    __tablename__ = "allowed_domain"
    __table_args__ = (UniqueConstraint("letter_id", "domain"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE", index=True)
    domain: str = Field(sa_column=Column(String(253), nullable=False))  # IDNA ASCII, lower case
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    include_subdomains: bool = False


class OrganizationCount(SQLModel, table=True):
    """Verified signatures per organization, kept in step with `Letter.verified_count`."""

    __tablename__ = "organization_count"
    __table_args__ = (UniqueConstraint("letter_id", "organization"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    count: int = Field(default=0, sa_column=Column(Integer, nullable=False))


class PendingSignature(SQLModel, table=True):
    """A request to sign (or to re-confirm) waiting for its magic link to be used.

    It holds what the signer typed (the name and title sealed: letters.record.names), the
    keyed hash of their address and the hash of the link's nonce. The link and the address
    live only in the queued email (`OutboxMessage`, sealed too), which is deleted once it
    is handed to the mail server.
    """

    __tablename__ = "pending_signature"

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    email_hash: str = Field(sa_column=Column(String(64), nullable=False))
    domain: str = Field(sa_column=Column(String(253), nullable=False))
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    # Name and title, sealed and bound to `nonce_hash` ("" when neither was given).
    sealed_name: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    show_name: bool = False
    reveal_at: int | None = Field(default=None, sa_column=Column(Integer))
    nonce_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expires_at: datetime = Field(sa_column=_timestamp())
    used_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


Index("ix_pending_signature_expires_at", col(PendingSignature.expires_at))


class Signature(SQLModel, table=True):
    """A verified signature: one per person per letter, identified by a keyed email hash."""

    __table_args__ = (UniqueConstraint("letter_id", "email_hash"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    email_hash: str = Field(sa_column=Column(String(64), nullable=False))
    domain: str = Field(sa_column=Column(String(253), nullable=False))
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    # In clear only while shown; a hidden name and title are kept in `sealed_name`, bound
    # to (letter_id, email_hash) (letters.record.names).
    name: str = Field(default="", sa_column=Column(String(100), nullable=False))
    title: str = Field(default="", sa_column=Column(String(120), nullable=False))
    sealed_name: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    show_name: bool = False
    # A hidden signer's choice: show my name once this many from my organization signed.
    reveal_at: int | None = Field(default=None, sa_column=Column(Integer))
    # sha256 of the receipt the signer was shown; it names this signature in the ledger.
    commitment: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    verified_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    # The version of the letter's text (Letter.version) current when this was confirmed.
    letter_version: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default="1")
    )
    # The letter's authors hid this name (moderation): it stays hidden, whatever the signer
    # asks later by signing again, managing the signature or a reveal threshold.
    name_hidden_by_authors: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    # Confirmed in a founding round, before launch: counted in no counter and no ledger
    # entry until the letter launches (letters.record.founding).
    founding: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )


Index(
    "ix_signature_public",
    col(Signature.letter_id),
    col(Signature.show_name),
    col(Signature.id),
)


# The hidden names waiting for a reveal threshold, per organization (public.py).
Index(
    "ix_signature_waiting",
    col(Signature.letter_id),
    col(Signature.organization),
    col(Signature.reveal_at),
    postgresql_where=col(Signature.reveal_at).is_not(None),
    sqlite_where=col(Signature.reveal_at).is_not(None),
)


# Counts how many signed each version of a letter.
Index(
    "ix_signature_letter_version",
    col(Signature.letter_id),
    col(Signature.letter_version),
)


class RateLimitHit(SQLModel, table=True):
    """Requests counted per key (a hash, never a raw address or IP) in a fixed time window."""

    __tablename__ = "rate_limit_hit"

    key: str = Field(sa_column=Column(String(80), primary_key=True))
    window_start: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    hits: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    expires_at: datetime = Field(sa_column=_timestamp())


class OutboxMessage(SQLModel, table=True):
    """An email waiting to be sent, sealed (letters.mail.outbox): the row holds no readable
    address, link or text. It is deleted once sent.

    Most emails go from the site's neutral sender (MAIL_FROM). A letter's delivery goes on
    the `delivery` channel: from its own sender and mail server (DELIVERY_FROM,
    DELIVERY_SMTP_URL), with the authors' Reply-To and attachments.
    """

    __tablename__ = "outbox_message"

    # Chosen in code (at random) before the row is written: the sealed message is bound to it.
    id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
        )
    )
    # The message (recipient, subject, bodies, channel, sender's name, Reply-To,
    # attachments), sealed under a key derived from SECRET_KEY (letters.sealing).
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    locked_until: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    # The delivery this email carries: marked sent (or failed) when the server answers.
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="SET NULL")


Index(
    "ix_outbox_message_due",
    col(OutboxMessage.next_attempt_at),
)


class DailyCount(SQLModel, table=True):
    """Verified signatures per UTC day and organization, counted with the signature."""

    __tablename__ = "daily_count"
    __table_args__ = (UniqueConstraint("letter_id", "day", "organization"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    day: str = Field(sa_column=Column(String(10), nullable=False))  # YYYY-MM-DD, UTC
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    count: int = Field(default=0, sa_column=Column(Integer, nullable=False))


class LedgerKind(StrEnum):
    signed = "signed"  # a signature was verified: +1
    changed = "changed"  # named/hidden, name or title changed: +0
    withdrawn = "withdrawn"  # the signer withdrew: -1
    invalidated = "invalidated"  # the authors invalidated it (spam): -1
    delivered = "delivered"  # the authors delivered the letter (format v2, with a digest): 0


class LedgerEntry(SQLModel, table=True):
    """One event of a letter's public, hash-chained record of its signatures.

    It holds only what is public: no email hash, no hidden name. A name is chained through
    `name_digest` (a salted hash), so it can be blanked later (the signer hid it, or the
    authors erased names) without breaking the chain. See letters.record.ledger.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("letter_id", "seq"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    seq: int = Field(sa_column=Column(Integer, nullable=False))  # 1, 2, 3... per letter
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    day: str = Field(sa_column=Column(String(10), nullable=False))  # YYYY-MM-DD, UTC
    organization: str = Field(sa_column=Column(String(100), nullable=False))
    named: bool = False
    name: str = Field(default="", sa_column=Column(String(100), nullable=False))
    title: str = Field(default="", sa_column=Column(String(120), nullable=False))
    name_salt: str = Field(default="", sa_column=Column(String(32), nullable=False))
    name_digest: str = Field(default="", sa_column=Column(String(64), nullable=False))
    commitment: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    entry_hash: str = Field(sa_column=Column(String(64), nullable=False))
    # The entry's format (1 or 2) and, in format 2, the SHA-256 of a document it vouches
    # for (a delivery's signed snapshot), "" for kinds that have none.
    format_version: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default="1")
    )
    digest: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))


class ManageLink(SQLModel, table=True):
    """A signer's request to change or withdraw their signature, waiting for its link."""

    __tablename__ = "manage_link"

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    email_hash: str = Field(sa_column=Column(String(64), nullable=False))
    nonce_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expires_at: datetime = Field(sa_column=_timestamp())
    used_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


Index("ix_manage_link_expires_at", col(ManageLink.expires_at))


# --- Letter authors ----------------------------------------------------------------------


class AuthorRole(StrEnum):
    owner = "owner"  # started the letter; manages its co-authors
    coauthor = "coauthor"


class Author(SQLModel, table=True):
    """Someone who may sign in to write letters.

    Unlike a signer's, an author's address is kept: sign-in links and milestone emails go
    to it, and co-authors see it. `can_create` (given by an admin) lets them start letters;
    anyone invited as a co-author gets an account without it.
    """

    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject"),)

    id: int = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))  # lower case
    name: str = Field(default="", sa_column=Column(String(100), nullable=False))
    is_admin: bool = False
    can_create: bool = False
    # Set on the first single sign-on, then used to recognize the person.
    oidc_issuer: str | None = Field(default=None, sa_column=Column(String(500)))
    oidc_subject: str | None = Field(default=None, sa_column=Column(String(255)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    last_sign_in_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class AuthorLink(SQLModel, table=True):
    """A sign-in link emailed to an author, waiting to be used (once, before it expires)."""

    __tablename__ = "author_link"

    id: int = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="author.id", ondelete="CASCADE", index=True)
    nonce_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expires_at: datetime = Field(sa_column=_timestamp())
    used_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class AuthorSession(SQLModel, table=True):
    """A signed-in browser. The cookie carries a signed random token; this row keeps its hash,
    so signing out (deleting the row) makes the cookie worthless even if it was copied."""

    __tablename__ = "author_session"

    id: int = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="author.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    method: str = Field(sa_column=Column(String(10), nullable=False))  # "link" or "oidc"
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    expires_at: datetime = Field(sa_column=_timestamp())


class LetterAuthor(SQLModel, table=True):
    """Who may edit, publish, moderate and export a letter."""

    __tablename__ = "letter_author"
    __table_args__ = (UniqueConstraint("letter_id", "author_id"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    author_id: int = Field(foreign_key="author.id", ondelete="CASCADE", index=True)
    role: str = Field(sa_column=Column(String(20), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class LetterVersion(SQLModel, table=True):
    """A published text of a letter. Once published, a letter changes only by a new version."""

    __tablename__ = "letter_version"
    __table_args__ = (UniqueConstraint("letter_id", "number"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    number: int = Field(sa_column=Column(Integer, nullable=False))  # 1, 2, 3... per letter
    title: str = Field(sa_column=Column(String(200), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(default="", sa_column=Column(String(300), nullable=False))  # public
    author_id: int | None = Field(default=None, foreign_key="author.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class AuditEntry(SQLModel, table=True):
    """What an author did to a letter, for its authors to see: publishing, revisions,
    co-authors, and every moderation action. It never holds an email address of a signer
    or a hidden name; a signature is named by its public ledger commitment."""

    __tablename__ = "audit_entry"

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE", index=True)
    author_id: int | None = Field(default=None, foreign_key="author.id", ondelete="SET NULL")
    author_email: str = Field(sa_column=Column(String(254), nullable=False))
    action: str = Field(sa_column=Column(String(30), nullable=False))
    organization: str = Field(default="", sa_column=Column(String(100), nullable=False))
    commitment: str = Field(default="", sa_column=Column(String(64), nullable=False))
    detail: str = Field(default="", sa_column=Column(String(500), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class BlockedSigner(SQLModel, table=True):
    """A signature the authors invalidated: its person cannot confirm back in."""

    __tablename__ = "blocked_signer"
    __table_args__ = (UniqueConstraint("letter_id", "email_hash"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    email_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class Milestone(SQLModel, table=True):
    """A round count (or the goal) a letter reached; the unique row makes its email go once."""

    __table_args__ = (UniqueConstraint("letter_id", "threshold"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    threshold: int = Field(sa_column=Column(Integer, nullable=False))
    reached_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


# --- The campaign: delivering a letter, and what came of it --------------------------------


class DeliveryMethod(StrEnum):
    email = "email"  # sent by the site, from the delivery sender, to an address the authors gave
    other = "other"  # in person or by other means, recorded by the authors


class Delivery(SQLModel, table=True):
    """The authors delivered a letter: to whom, when, how and which version, with the count.

    Recording it appends a `delivered` entry to the public ledger whose digest is the
    SHA-256 of `snapshot`, the signed snapshot of the count at that moment (see
    letters.record.delivery). Everything here is public but the address, the Reply-To and
    who recorded it, which only the letter's authors see.
    """

    __table_args__ = (UniqueConstraint("letter_id", "ledger_seq"),)

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE")
    recipient: str = Field(sa_column=Column(String(200), nullable=False))
    method: str = Field(sa_column=Column(String(10), nullable=False))
    delivered_on: str = Field(sa_column=Column(String(10), nullable=False))  # YYYY-MM-DD
    letter_version: int = Field(sa_column=Column(Integer, nullable=False))
    verified_count: int = Field(sa_column=Column(Integer, nullable=False))
    ledger_seq: int = Field(sa_column=Column(Integer, nullable=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    snapshot: str = Field(sa_column=Column(Text, nullable=False))  # compact JWS
    address: str = Field(default="", sa_column=Column(String(254), nullable=False))
    sender_name: str = Field(default="", sa_column=Column(String(100), nullable=False))
    reply_to: str = Field(default="", sa_column=Column(String(254), nullable=False))
    author_id: int | None = Field(default=None, foreign_key="author.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    sent_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    failed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class FollowUpKind(StrEnum):
    reply = "reply"  # the recipient's answer
    outcome = "outcome"  # what came of the letter later


class FollowUp(SQLModel, table=True):
    """A reply to a letter, or a later outcome, published by its authors."""

    __tablename__ = "follow_up"

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE", index=True)
    kind: str = Field(sa_column=Column(String(10), nullable=False))
    happened_on: str = Field(sa_column=Column(String(10), nullable=False))  # YYYY-MM-DD
    source: str = Field(default="", sa_column=Column(String(200), nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    author_id: int | None = Field(default=None, foreign_key="author.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


# --- Mail health: kept apart from the outbox, whose rows go once sent ----------------------


class MailTally(SQLModel, table=True):
    """Sending attempts in one clock hour (UTC) by channel, outcome and the server's codes.

    `outcome` is `sent`, `failed` (tried again later) or `dropped` (given up after the last
    try); `reply_code` is the SMTP reply code (0: no reply, the server was unreachable) and
    `status` the enhanced status code ("5.7.1"). No address and no reply text: servers quote
    the recipient in it. Each count is spread over a few rows (`shard`, chosen at random by
    each attempt) so that concurrent senders seldom wait for one another's row.
    """

    __tablename__ = "mail_tally"
    __table_args__ = (
        UniqueConstraint("hour", "channel", "outcome", "reply_code", "status", "shard"),
    )

    id: int = Field(default=None, primary_key=True)
    hour: datetime = Field(sa_column=_timestamp())  # the unique constraint indexes it
    channel: str = Field(sa_column=Column(String(10), nullable=False))
    outcome: str = Field(sa_column=Column(String(10), nullable=False))
    reply_code: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    status: str = Field(default="", sa_column=Column(String(9), nullable=False))
    shard: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class MailAlert(SQLModel, table=True):
    """A day on which the admins were told that mail was failing; the unique row makes the
    alert go once that day."""

    __tablename__ = "mail_alert"

    id: int = Field(default=None, primary_key=True)
    day: str = Field(sa_column=Column(String(10), nullable=False, unique=True))  # YYYY-MM-DD
    failures: int = Field(sa_column=Column(Integer, nullable=False))
    sent_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class FoundingRound(SQLModel, table=True):
    """A draft's founding round: people sign through a secret link before the letter is
    public, and are counted together at launch (letters.record.founding).

    The link is this row's id and `link_nonce`, signed with the secret key (its own salt):
    the row alone cannot make a link, and the workspace can show the link again. A new
    link replaces the nonce, so the old one stops working. Open while neither `closed_at` nor
    `launched_at` is set. `launch_at` is the planned launch (UTC), `time_zone` the IANA
    zone the authors chose it in.
    """

    __tablename__ = "founding_round"

    id: int = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", ondelete="CASCADE", unique=True)
    link_nonce: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    opened_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    launch_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    time_zone: str = Field(
        default="UTC", sa_column=Column(String(64), nullable=False, server_default="UTC")
    )
    closed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    launched_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
