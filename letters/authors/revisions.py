"""Honest revisions: a published text is never edited in place.

A change makes a new version with a short public note. Every version stays readable, the
differences between any two are shown, and each signature records the version that was
current when it was confirmed (`Signature.letter_version`), so readers see how many
signed each text.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit
from letters.authors.access import Act, NotAllowed
from letters.authors.drafts import EditConflict
from letters.authors.letter_form import FormErrors, Revision
from letters.i18n import gettext
from letters.models import Letter, LetterStatus, LetterVersion, Signature

CONTEXT_LINES = 2


async def revise(
    session: AsyncSession, act: Act, revision: Revision, base_version: int | None = None
) -> LetterVersion:
    """Publish a new version of a published letter. Commits.

    `base_version` is the version the author was editing: if another author published a
    newer one meanwhile, raises EditConflict and writes nothing.
    """
    author, now = act.author, act.now
    letter = (await act.access(session)).letter
    assert letter.id is not None
    if letter.status != LetterStatus.published:
        raise NotAllowed(
            gettext(
                "Only a published letter can be revised. A draft is edited directly; "
                "reopen a closed letter first."
            )
        )
    if base_version is not None and base_version != letter.version:
        raise EditConflict
    if (revision.title, revision.body) == (letter.title, letter.body):
        raise FormErrors({"body": gettext("Nothing changed: edit the title or the text.")})
    previous = letter.version
    # Read before the update below, which refreshes `letter` in the session.
    old_title, old_body = letter.title, letter.body
    old_moment = letter.revised_at or letter.published_at or letter.created_at
    # The row lock taken here orders concurrent revisions; the version number comes from it.
    number = (
        await session.exec(
            update(Letter)
            .where(col(Letter.id) == letter.id, col(Letter.version) == previous)
            .values(
                version=col(Letter.version) + 1,
                title=revision.title,
                body=revision.body,
                revised_at=now,
                revision_note=revision.note,
                updated_at=now,
            )
            .returning(col(Letter.version))
        )
    ).scalar_one_or_none()
    if number is None:
        await session.rollback()
        raise EditConflict
    if await _version(session, letter.id, previous) is None:
        # Published before versions were kept (e.g. by `letters import`): keep its text too.
        session.add(
            LetterVersion(
                letter_id=letter.id,
                number=previous,
                title=old_title,
                body=old_body,
                created_at=old_moment,
            )
        )
    version = LetterVersion(
        letter_id=letter.id,
        number=number,
        title=revision.title,
        body=revision.body,
        note=revision.note,
        author_id=author.id,
        created_at=now,
    )
    session.add(version)
    await audit.record(
        session, letter.id, author, audit.Action.revised, detail=revision.note, now=now
    )
    await session.commit()
    return version


async def _version(session: AsyncSession, letter_id: int, number: int) -> LetterVersion | None:
    statement = select(LetterVersion).where(
        LetterVersion.letter_id == letter_id, LetterVersion.number == number
    )
    return (await session.exec(statement)).first()


@dataclass(frozen=True)
class VersionSummary:
    number: int
    title: str
    note: str
    created_at: datetime
    signed: int  # signatures that confirmed this version and still count


async def history(session: AsyncSession, letter: Letter) -> list[VersionSummary]:
    """Every version, newest first, with how many signed each."""
    assert letter.id is not None
    versions = (
        await session.exec(
            select(LetterVersion)
            .where(LetterVersion.letter_id == letter.id)
            .order_by(col(LetterVersion.number).desc())
        )
    ).all()
    signed = await signed_per_version(session, letter.id)
    summaries = [
        VersionSummary(v.number, v.title, v.note, v.created_at, signed.get(v.number, 0))
        for v in versions
    ]
    if not summaries:  # published by `letters import`, never revised
        moment = letter.published_at or letter.created_at
        summaries = [VersionSummary(1, letter.title, "", moment, signed.get(1, 0))]
    return summaries


async def signed_per_version(session: AsyncSession, letter_id: int) -> dict[int, int]:
    rows = await session.exec(
        select(Signature.letter_version, func.count())
        .where(Signature.letter_id == letter_id)
        .group_by(col(Signature.letter_version))
    )
    return {number: count for number, count in rows.all()}


async def version_text(session: AsyncSession, letter: Letter, number: int) -> LetterVersion | None:
    """A version's text; for a letter never revised, version 1 is its current text."""
    assert letter.id is not None
    found = await _version(session, letter.id, number)
    if found is None and number == letter.version:
        moment = letter.revised_at or letter.published_at or letter.created_at
        return LetterVersion(
            letter_id=letter.id,
            number=number,
            title=letter.title,
            body=letter.body,
            note=letter.revision_note,
            created_at=moment,
        )
    return found


# --- differences ---------------------------------------------------------------------------


@dataclass
class DiffLine:
    """One line of a comparison. `kind`: same, added, removed, changed or skipped.

    A changed line carries `parts`: (op, text) pairs where op is same, added or removed,
    so the words that changed can be marked inside it. A skipped line stands for `count`
    unchanged lines left out.
    """

    kind: str
    text: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0


@dataclass(frozen=True)
class Comparison:
    old_title: str
    new_title: str
    lines: list[DiffLine]
    added: int
    removed: int

    @property
    def title_changed(self) -> bool:
        return self.old_title != self.new_title


def compare(old: LetterVersion, new: LetterVersion) -> Comparison:
    """The differences from `old` to `new`, line by line, and word by word in changed lines."""
    old_lines, new_lines = old.body.split("\n"), new.body.split("\n")
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    lines: list[DiffLine] = []
    added = removed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            lines.extend(DiffLine("same", text) for text in old_lines[i1:i2])
            continue
        before, after = old_lines[i1:i2], new_lines[j1:j2]
        # Blank lines only separate paragraphs: they are shown, not counted.
        removed += sum(1 for text in before if text.strip())
        added += sum(1 for text in after if text.strip())
        if tag == "replace" and len(before) == len(after):
            lines.extend(
                DiffLine("changed", parts=_words(a, b)) for a, b in zip(before, after, strict=True)
            )
            continue
        lines.extend(DiffLine("removed", text) for text in before)
        lines.extend(DiffLine("added", text) for text in after)
    return Comparison(old.title, new.title, _fold(lines), added, removed)


def _words(old: str, new: str) -> list[tuple[str, str]]:
    a, b = re.findall(r"\S+|\s+", old), re.findall(r"\S+|\s+", new)
    parts: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            parts.append(("removed", "".join(a[i1:i2])))
        if j2 > j1:
            parts.append(("added", "".join(b[j1:j2])))
    return parts


def _fold(lines: list[DiffLine]) -> list[DiffLine]:
    """Keep a little context around changes; fold long unchanged stretches."""
    changed = [i for i, line in enumerate(lines) if line.kind != "same"]
    if not changed:
        return lines
    keep: set[int] = set()
    for i in changed:
        keep.update(range(i - CONTEXT_LINES, i + CONTEXT_LINES + 1))
    folded: list[DiffLine] = []
    skipped = 0
    for i, line in enumerate(lines):
        if i in keep:
            if skipped:
                folded.append(DiffLine("skipped", count=skipped))
                skipped = 0
            folded.append(line)
        else:
            skipped += 1
    if skipped:
        folded.append(DiffLine("skipped", count=skipped))
    return folded
