"""The authors' side of a founding round: open it, replace its link, plan or start the
launch, or close it.

The text is frozen while a round is open: founding signers sign what will be published.
To change the title, the text or the domains, the authors close the round, which discards
its founding signatures (the count starts again at zero; nobody's address is kept to tell
them), edit the draft, and open a new round. Once launched, the text changes only by a
new public version, like any published letter.

Each function checks the author's part in the letter (letters.authors.access), records
what it did in the audit log, and commits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit
from letters.authors.access import Act, NotAllowed
from letters.authors.drafts import PublishRefused, domains_of, readiness
from letters.authors.letter_form import FormErrors
from letters.i18n import gettext
from letters.models import FoundingRound, Letter, LetterStatus
from letters.record import founding
from letters.settings import Settings

MAX_ZONE = 64


def zone(name: str | None) -> ZoneInfo:
    """An IANA time zone by name; FormErrors for anything else."""
    name = (name or "").strip() or "UTC"
    if len(name) > MAX_ZONE or not name.isascii() or ".." in name or name.startswith("/"):
        raise FormErrors({"time_zone": gettext("Choose a time zone such as Europe/Madrid.")})
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FormErrors(
            {"time_zone": gettext("Choose a time zone such as Europe/Madrid.")}
        ) from None


def parse_launch(value: str | None, zone_name: str | None, now: datetime) -> tuple[datetime, str]:
    """A launch time typed in a time zone: (the moment in UTC, the zone's name)."""
    where = zone(zone_name)
    text = (value or "").strip()
    try:
        local = datetime.fromisoformat(text) if 0 < len(text) <= 30 else None
    except ValueError:
        local = None
    if local is None or local.tzinfo is not None:
        raise FormErrors({"launch_at": gettext("Give a date and time, such as 2027-03-01 09:00.")})
    moment = local.replace(tzinfo=where).astimezone(UTC)
    if moment <= now:
        raise FormErrors({"launch_at": gettext("Choose a launch time in the future.")})
    return moment, where.key


async def _draft(session: AsyncSession, act: Act) -> Letter:
    letter = (await act.access(session)).letter
    if letter.status != LetterStatus.draft:
        raise NotAllowed(gettext("This letter is already published."))
    return letter


async def _open(session: AsyncSession, act: Act) -> tuple[Letter, FoundingRound]:
    """The draft and its open founding round; NotAllowed when it has none open."""
    letter = await _draft(session, act)
    found = await founding.round_of(session, letter.id)
    if not founding.is_open(found):
        raise NotAllowed(gettext("This letter has no open founding round."))
    assert found is not None
    return letter, found


async def _saved(
    session: AsyncSession, act: Act, round_: FoundingRound, action: audit.Action, detail: str = ""
) -> FoundingRound:
    """Store the round, say what the author did in the audit log, and commit."""
    session.add(round_)
    await audit.record(session, round_.letter_id, act.author, action, detail=detail, now=act.now)
    await session.commit()
    return round_


async def open_round(session: AsyncSession, act: Act) -> FoundingRound:
    """Open the draft's founding round (or return the one open). Raises PublishRefused
    when the draft is not ready to be signed (the same checks as publishing)."""
    letter = await _draft(session, act)
    existing = await founding.round_of(session, letter.id)
    if founding.is_open(existing):
        assert existing is not None
        return existing
    problems = readiness(letter, await domains_of(session, letter.id), act.now)
    if problems:
        await session.rollback()
        raise PublishRefused(problems)
    round_ = existing or FoundingRound(letter_id=letter.id, link_nonce="")
    round_.link_nonce = founding.new_nonce()
    round_.opened_at = act.now
    round_.closed_at = None
    round_.launch_at = None
    round_.time_zone = "UTC"
    return await _saved(session, act, round_, audit.Action.founding_opened)


async def new_link(session: AsyncSession, act: Act) -> FoundingRound:
    """Replace the round's link: the old one stops working; signatures stay."""
    _, round_ = await _open(session, act)
    round_.link_nonce = founding.new_nonce()
    return await _saved(session, act, round_, audit.Action.founding_link)


async def close_round(session: AsyncSession, act: Act) -> int:
    """Close the round: its link stops working and its founding signatures are discarded
    (the count starts again at zero). Returns how many were discarded."""
    letter, round_ = await _open(session, act)
    round_.closed_at = act.now
    discarded = await founding.reset(session, letter.id)
    await _saved(session, act, round_, audit.Action.founding_closed, str(discarded))
    return discarded


async def schedule(
    session: AsyncSession, act: Act, launch_at: datetime | None, time_zone: str = "UTC"
) -> FoundingRound:
    """Plan the launch at `launch_at` (UTC), or plan none (None: the authors launch it)."""
    _, round_ = await _open(session, act)
    round_.launch_at = launch_at
    round_.time_zone = time_zone
    detail = launch_at.isoformat() if launch_at else ""
    return await _saved(session, act, round_, audit.Action.launch_planned, detail)


async def launch_now(session: AsyncSession, act: Act, settings: Settings) -> Letter:
    """Make the letter public now, with its founding signatures counted."""
    letter, _ = await _open(session, act)
    await audit.record(session, letter.id, act.author, audit.Action.launched, now=act.now)
    await session.flush()
    launched = await founding.launch(session, letter.id, settings, act.now, author_id=act.author.id)
    if launched is None:
        raise NotAllowed(gettext("This letter has no open founding round."))
    return launched


def in_zone(moment: datetime, zone_name: str) -> str:
    """A moment as the authors planned it: local date and time, and the zone's name."""
    try:
        where = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        where, zone_name = ZoneInfo("UTC"), "UTC"
    return f"{moment.astimezone(where):%Y-%m-%d %H:%M} ({zone_name})"
