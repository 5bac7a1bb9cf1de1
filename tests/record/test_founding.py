"""Founding rounds under concurrency: confirmations racing the launch are each counted
once, either at launch or as the public letter's, and the ledger stays whole."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import Session, select

from letters.db import make_async_engine, make_sessionmaker, writer
from letters.models import AllowedDomain, FoundingRound, LedgerEntry, Letter
from letters.record import founding
from letters.record.founding import Founded
from letters.record.signing import Confirmation, SigningRules, confirm, request_signature
from letters.tokens import Signer
from tests.conftest import make_letter
from tests.helpers import assert_consistent

SLUG = "founding-race"
PEOPLE = 30


def draft_with_round(engine: Any) -> int:
    letter = make_letter(engine, SLUG, status="draft")
    with Session(writer(engine)) as session:
        session.add(FoundingRound(letter_id=letter.id, link_nonce=founding.new_nonce()))
        session.commit()
    return letter.id


def test_confirmations_racing_the_launch_are_each_counted_once(settings, engine, db):
    letter_id = draft_with_round(engine)
    signer = Signer(settings.secret_key)

    async def main() -> tuple[list[Any], list[Any]]:
        async_engine = make_async_engine(settings)
        maker = make_sessionmaker(writer(async_engine))
        try:
            async with maker() as session:
                letter = await session.get(Letter, letter_id)
                domains = (
                    await session.exec(
                        select(AllowedDomain).where(AllowedDomain.letter_id == letter_id)
                    )
                ).all()
            assert letter is not None
            rules = SigningRules(letter, domains, founding=True)
            tokens = []
            for index in range(PEOPLE):
                async with maker() as session:
                    link = await request_signature(
                        session,
                        slug=SLUG,
                        data={"email": f"p{index}@github.com", "name": "", "title": ""},
                        client_host=f"198.51.100.{index + 1}",
                        signer=signer,
                        settings=settings,
                        rules=rules,
                    )
                tokens.append(link.token)
            # The first third confirm before anything else happens.
            for token in tokens[: PEOPLE // 3]:
                async with maker() as session:
                    await confirm(session, token, signer, settings, founding_round=True)
            start = asyncio.Event()

            async def confirm_one(token: str) -> Any:
                await start.wait()
                async with maker() as session:
                    return await confirm(session, token, signer, settings, founding_round=True)

            async def launch_once() -> Any:
                await start.wait()
                async with maker() as session:
                    return await founding.launch(session, letter_id, settings)

            rest = tokens[PEOPLE // 3 :]
            tasks = [asyncio.ensure_future(confirm_one(token)) for token in rest[:10]]
            tasks += [asyncio.ensure_future(launch_once()) for _ in range(3)]
            tasks += [asyncio.ensure_future(confirm_one(token)) for token in rest[10:]]
            await asyncio.sleep(0)
            start.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
            return results[:10] + results[13:], results[10:13]
        finally:
            await async_engine.dispose()

    confirmed, launches = asyncio.run(main())
    errors = [r for r in confirmed + launches if isinstance(r, BaseException)]
    assert not errors, [repr(error) for error in errors]
    assert all(isinstance(r, Founded | Confirmation) for r in confirmed)
    assert sum(result is not None for result in launches) == 1  # launched once
    c = assert_consistent(db, SLUG)
    assert c["verified"] == c["rows"] == PEOPLE
    db.rollback()
    entries = db.exec(select(LedgerEntry).where(LedgerEntry.letter_id == letter_id)).all()
    assert len(entries) == PEOPLE
    # The founders' entries come first, all dated the launch day.
    founders = PEOPLE // 3 + sum(isinstance(r, Founded) for r in confirmed)
    launch_day = db.exec(select(Letter).where(Letter.id == letter_id)).one().published_at
    assert launch_day is not None
    ordered = sorted(entries, key=lambda entry: entry.seq)
    assert {entry.day for entry in ordered[:founders]} == {launch_day.date().isoformat()}
