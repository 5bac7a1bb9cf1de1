"""After publishing: delivering a letter with proof, and publishing what came of it.

A delivery records to whom, when, how and which version: by email (the site sends the
letter from the delivery sender, DELIVERY_FROM, with the display name and Reply-To the
authors choose) or in person / by other means. Either way the count of that moment is
signed and chained into the public ledger (letters.record.delivery). The recipient's reply
and later outcomes are published by the authors, as written, with their date. Every
action is in the letter's audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from joserfc.jwk import ECKey
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit, revisions
from letters.authors.access import Act, NotAllowed
from letters.authors.accounts import normalize_email
from letters.authors.letter_form import DATE, FormErrors, clean_body
from letters.forms import FieldError, clean_text
from letters.i18n import N_, gettext
from letters.models import Delivery, FollowUp, FollowUpKind, Letter, LetterStatus
from letters.record import delivery
from letters.settings import Settings

MAX_RECIPIENT = 200
MAX_FROM_NAME = 100
MAX_SOURCE = 200


@dataclass(frozen=True)
class FollowUpForm:
    kind: FollowUpKind
    happened_on: date
    source: str
    text: str


def _day(value: Any, field: str, letter: Letter, today: date, errors: dict[str, str]) -> date:
    """A day from the letter's publication to today (YYYY-MM-DD)."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if not DATE.match(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        errors[field] = gettext("Enter a date as YYYY-MM-DD.")
        return today
    published = (letter.published_at or letter.created_at).date()
    if not published <= day <= today:
        errors[field] = gettext(
            "Choose a day from the letter's publication (%(first)s) to today.",
            first=published.isoformat(),
        )
    return day


def _collect(errors: dict[str, str], parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except FieldError as error:
        errors[error.field] = error.message
        return ""


def parse_delivery(
    form: Mapping[str, Any], letter: Letter, settings: Settings, today: date
) -> delivery.Handover:
    """The delivery form, every field checked; raises FormErrors."""
    errors: dict[str, str] = {}
    recipient = _collect(
        errors, clean_text, form.get("recipient"), "recipient", N_("To whom"), MAX_RECIPIENT
    )
    if not recipient and "recipient" not in errors:
        errors["recipient"] = gettext("Say to whom the letter was delivered.")
    method = form.get("method")
    if method not in ("email", "other"):
        errors["method"] = gettext("Choose how the letter was delivered.")
    version_text = form.get("version", "")
    version = letter.version
    if isinstance(version_text, str) and version_text.isascii() and version_text.isdigit():
        version = int(version_text[:6])
    if not 1 <= version <= letter.version:
        errors["version"] = gettext("Choose one of the letter's versions.")
    email = None
    delivered_on = today
    if method == "email":
        if not settings.delivery_from:
            errors["method"] = gettext(
                "This site is not set up to send deliveries by email (DELIVERY_FROM): "
                "deliver it yourself, then record it as delivered in person or by other means."
            )
        to = _collect(errors, normalize_email, form.get("to"), "to")
        reply_to = _collect(errors, normalize_email, form.get("reply_to"), "reply_to")
        from_name = _collect(
            errors, clean_text, form.get("from_name"), "from_name", N_("Sender name"), MAX_FROM_NAME
        )
        if not from_name and "from_name" not in errors:
            errors["from_name"] = gettext("Enter the name the email comes from.")
        elif any(char in from_name for char in '@<>"'):
            errors["from_name"] = gettext("Enter a name, not an address: no @, < or >.")
        email = delivery.ByEmail(to=to, from_name=from_name, reply_to=reply_to)
    elif method == "other":
        delivered_on = _day(form.get("delivered_on"), "delivered_on", letter, today, errors)
    if errors:
        raise FormErrors(errors)
    return delivery.Handover(recipient, delivered_on, version, email)


def parse_follow_up(form: Mapping[str, Any], letter: Letter, today: date) -> FollowUpForm:
    """A reply or an outcome, every field checked; raises FormErrors."""
    errors: dict[str, str] = {}
    kind = form.get("kind")
    if kind not in (FollowUpKind.reply, FollowUpKind.outcome):
        errors["kind"] = gettext("Choose whether this is a reply or an outcome.")
    happened_on = _day(form.get("happened_on"), "happened_on", letter, today, errors)
    source = _collect(errors, clean_text, form.get("source"), "source", N_("From"), MAX_SOURCE)
    text = _collect(errors, clean_body, form.get("text"), "text")
    if not text and "text" not in errors:
        errors["text"] = gettext("Write what was answered or what happened.")
    if errors:
        raise FormErrors(errors)
    return FollowUpForm(FollowUpKind(str(kind)), happened_on, source, text)


def _public_letter(letter: Letter) -> None:
    if letter.status == LetterStatus.draft:
        raise NotAllowed(gettext("Publish the letter before delivering it."))


async def deliver(
    session: AsyncSession, act: Act, form: delivery.Handover, *, key: ECKey, settings: Settings
) -> tuple[Delivery, int | None]:
    """Record a delivery, sign its count into the ledger, send it if by email. Commits.

    Returns the delivery and the id of its queued email (None when not by email).
    """
    author, now = act.author, act.now
    letter = (await act.access(session)).letter
    _public_letter(letter)
    text = await revisions.version_text(session, letter, form.version)
    if text is None:
        raise FormErrors({"version": gettext("Choose one of the letter's versions.")})
    row, outbox_id = await delivery.deliver(
        session, letter.id, form, text, key=key, settings=settings, author_id=author.id, now=now
    )
    how = f"by email to {form.email.to}" if form.email else "in person or by other means"
    await audit.record(
        session,
        letter.id,
        author,
        audit.Action.delivered,
        detail=f"to {form.recipient}, {how}, on {row.delivered_on}; version {form.version}; "
        f"{row.verified_count:,} verified; ledger entry {row.ledger_seq}",
        now=now,
    )
    await session.commit()
    return row, outbox_id


async def publish_follow_up(session: AsyncSession, act: Act, form: FollowUpForm) -> FollowUp:
    """Publish a reply or an outcome on the letter's pages and feed. Commits."""
    author, now = act.author, act.now
    letter = (await act.access(session)).letter
    _public_letter(letter)
    row = FollowUp(
        letter_id=letter.id,
        kind=form.kind,
        happened_on=form.happened_on.isoformat(),
        source=form.source,
        text=form.text,
        author_id=author.id,
        created_at=now,
    )
    session.add(row)
    letter.updated_at = now  # the public pages show it: their cached copies must go
    session.add(letter)
    action = audit.Action.reply if form.kind == FollowUpKind.reply else audit.Action.outcome
    detail = f"{form.happened_on.isoformat()}" + (f", from {form.source}" if form.source else "")
    await audit.record(session, letter.id, author, action, detail=detail, now=now)
    await session.commit()
    return row


async def deliveries(session: AsyncSession, letter: Letter) -> list[Delivery]:
    """Every delivery of the letter with what only its authors see (address, Reply-To),
    newest first."""
    rows = await session.exec(
        select(Delivery).where(Delivery.letter_id == letter.id).order_by(col(Delivery.id).desc())
    )
    return list(rows.all())
