"""The export for delivering a letter: its public names and its hidden counts per organization.

It holds what the public pages show and nothing more: never a hidden name, never an
address. The CSV's `signatures` column adds up to the verified count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import Letter, Signature
from letters.spreadsheet import to_csv

BATCH = 1000
HEADER = ["type", "name", "title", "organization", "signed_at", "version", "signatures"]


@dataclass(frozen=True)
class NamedRow:
    id: int
    name: str
    title: str
    organization: str
    verified_at: datetime
    version: int


async def named_rows(
    session: AsyncSession, letter: Letter, after_id: int | None, limit: int
) -> list[NamedRow]:
    """Signatures shown by name, by organization then oldest first; only public columns."""
    statement = sql_select(
        col(Signature.id),
        col(Signature.name),
        col(Signature.title),
        col(Signature.organization),
        col(Signature.verified_at),
        col(Signature.letter_version),
    ).where(col(Signature.letter_id) == letter.id, col(Signature.show_name).is_(True))
    if after_id is not None:
        statement = statement.where(col(Signature.id) > after_id)
    connection = await session.connection()  # six columns: past sqlmodel.select's typing
    rows = (await connection.execute(statement.order_by(col(Signature.id)).limit(limit))).all()
    return [NamedRow(*row) for row in rows]


async def hidden_per_organization(session: AsyncSession, letter: Letter) -> list[tuple[str, int]]:
    """(organization, signatures not shown by name), largest first."""
    rows = await session.exec(
        select(Signature.organization, func.count())
        .where(Signature.letter_id == letter.id, col(Signature.show_name).is_(False))
        .group_by(col(Signature.organization))
        .order_by(func.count().desc(), col(Signature.organization))
    )
    return [(organization, number) for organization, number in rows.all()]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def csv_lines(
    open_session: Callable[[], AbstractAsyncContextManager[AsyncSession]], letter: Letter
) -> AsyncIterator[str]:
    """The CSV in pieces, read in one transaction so its rows add up to one moment's count."""
    yield to_csv([HEADER])
    async with open_session() as session:
        after = None
        while True:
            batch = await named_rows(session, letter, after, BATCH)
            yield to_csv(
                [
                    ["named", r.name, r.title, r.organization, iso(r.verified_at), r.version, 1]
                    for r in batch
                ]
            )
            if len(batch) < BATCH:
                break
            after = batch[-1].id
        hidden = await hidden_per_organization(session, letter)
    yield to_csv([["hidden", "", "", organization, "", "", n] for organization, n in hidden])
