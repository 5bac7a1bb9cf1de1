"""Counts stay exact when confirmations race, on SQLite and PostgreSQL alike.

Pending signatures are created through `request_signature`, then their links are used all
at once (`asyncio.gather`, one session each) through the app's own engine setup: the
writer sessionmaker, which takes SQLite's write lock up front and relies on row locks and
`ON CONFLICT` on PostgreSQL. A last test races the same links across several processes,
each with its own engine and pool, as `letters serve --workers N` would.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from multiprocessing import get_context
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import make_async_engine, make_sessionmaker, writer
from letters.models import BlockedSigner, LetterVersion, PendingSignature, Signature
from letters.record import signing
from letters.record.blocks import SignatureRemoved
from letters.record.signing import Confirmation, confirm, request_signature
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer, TokenError
from tests.helpers import assert_consistent, names_of, pending_count

ORGANIZATIONS = {"microsoft.com": "Microsoft", "github.com": "GitHub"}
Person = tuple[str, str, bool]  # email, name, show_name


@asynccontextmanager
async def writer_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The app's setup: one async engine, sessions for writing transactions; disposed after."""
    engine = make_async_engine(settings)
    try:
        yield make_sessionmaker(writer(engine))
    finally:
        await engine.dispose()


async def request_links(
    maker: async_sessionmaker[AsyncSession], settings: Settings, people: list[Person]
) -> list[str]:
    """One pending signature per entry (in order); returns the tokens the emails would carry."""
    signer = Signer(settings.secret_key)
    tokens = []
    for index, (email, name, show_name) in enumerate(people):
        async with maker() as session:
            link = await request_signature(
                session,
                slug="test-letter",
                data={"email": email, "name": name, "show_name": show_name, "title": ""},
                client_host=f"198.51.100.{index % 250 + 1}",
                signer=signer,
                settings=settings,
            )
        assert link.email == email.lower()
        tokens.append(link.token)
    return tokens


async def confirm_all(
    maker: async_sessionmaker[AsyncSession], settings: Settings, tokens: list[str]
) -> list[Confirmation | BaseException]:
    """Use every token at the same time, each in its own session; collect outcomes."""
    signer = Signer(settings.secret_key)
    start = asyncio.Event()

    async def one(token: str) -> Confirmation:
        await start.wait()  # line everyone up before the first query
        async with maker() as session:
            return await confirm(session, token, signer, settings)

    tasks = [asyncio.ensure_future(one(token)) for token in tokens]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)


def run_race(settings: Settings, people: list[Person], order: list[int]) -> tuple[list, list]:
    """Create the pending signatures, then confirm `tokens[i] for i in order` concurrently."""

    async def main() -> tuple[list[str], list[Confirmation | BaseException]]:
        async with writer_sessions(settings) as maker:
            tokens = await request_links(maker, settings, people)
            results = await confirm_all(maker, settings, [tokens[i] for i in order])
        return tokens, results

    return asyncio.run(main())


def successes(results: list[Any]) -> list[Confirmation]:
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, LinkUsed)
    ]
    assert not unexpected, f"unexpected errors: {[repr(error) for error in unexpected]}"
    return [r for r in results if isinstance(r, Confirmation)]


def many_people(count: int, seed: int) -> list[Person]:
    chooser = random.Random(seed)
    people = []
    for index in range(count):
        domain = "microsoft.com" if index % 3 else "github.com"
        show_name = chooser.random() < 0.4
        name = f"Person {index}" if show_name or index % 2 else ""
        people.append((f"person.{index}@{domain}", name, show_name))
    return people


def test_many_people_confirming_at_once_are_each_counted_once(settings, letter, db):
    people = many_people(80, seed=1)
    _, results = run_race(settings, people, list(range(len(people))))

    confirmed = successes(results)
    assert len(confirmed) == len(people)
    assert all(result.outcome == "verified" for result in confirmed)
    c = assert_consistent(db)
    expected_named = sum(1 for _, _, show in people if show)
    assert c["verified"] == c["rows"] == len(people)
    assert (c["named"], c["hidden"]) == (expected_named, len(people) - expected_named)
    expected_orgs = Counter(ORGANIZATIONS[email.split("@")[1]] for email, _, _ in people)
    assert c["orgs"] == dict(expected_orgs)
    # Every link was used, and no pending signature was lost or duplicated.
    assert pending_count(db) == len(people)
    db.rollback()
    assert all(p.used_at is not None for p in db.exec(select(PendingSignature)).all())


def test_confirmations_arriving_together_are_counted_together_each_with_its_own_outcome(
    settings, letter, db
):
    """On PostgreSQL, confirmations of one letter that arrive while others are being
    counted go together in one transaction (letters.record.batching): each still gets its
    own outcome (a used link, a blocked person), and counts and ledger stay exact. Below
    every reveal threshold and milestone, so the batch is kept as it is."""
    people = many_people(9, seed=4)
    signing.COUNTED_TOGETHER.clear()

    async def main() -> list[Confirmation | BaseException]:
        async with writer_sessions(settings) as maker:
            tokens = await request_links(maker, settings, people)
            async with maker() as session:
                # The authors removed the last person meanwhile.
                email_hash = Signer(settings.secret_key).email_hash(people[-1][0])
                session.add(BlockedSigner(letter_id=letter.id, email_hash=email_hash))
                await session.commit()
            # The first link twice: one of its two uses finds it used.
            return await confirm_all(maker, settings, [tokens[0], *tokens])

    results = asyncio.run(main())
    removed = [r for r in results if isinstance(r, SignatureRemoved)]
    assert len(removed) == 1
    confirmed = successes([r for r in results if r not in removed])
    assert len(confirmed) == len(people) - 1
    assert sum(isinstance(r, LinkUsed) for r in results) == 1
    c = assert_consistent(db)
    assert c["verified"] == c["rows"] == len(people) - 1
    if db.get_bind().dialect.name == "postgresql":
        assert sum(signing.COUNTED_TOGETHER.values()) >= 1, "no batch was counted together"


def test_a_batch_that_reaches_a_reveal_threshold_is_split_there(settings, letter, db):
    """Fourteen colleagues at once: the ninth and the rest around the tenth, whose count
    is a reveal threshold, are counted together, the tenth alone (with its follow-ups);
    a name waiting for ten colleagues is shown with the count that reached it."""
    people = [(f"colleague.{n}@microsoft.com", f"Colleague {n}", n > 0) for n in range(14)]
    signing.COUNTED_TOGETHER.clear()

    async def main() -> list[Confirmation | BaseException]:
        async with writer_sessions(settings) as maker:
            tokens = await request_links(maker, settings, people)
            async with maker() as session:  # the first waits for ten colleagues
                pending = (await session.exec(select(PendingSignature))).all()
                first = min(pending, key=lambda row: row.id)
                first.reveal_at = 10
                session.add(first)
                await session.commit()
            return await confirm_all(maker, settings, tokens)

    results = asyncio.run(main())
    assert len(successes(results)) == len(people)
    c = assert_consistent(db)
    assert c["verified"] == c["rows"] == len(people)
    assert (c["named"], c["hidden"]) == (len(people), 0)  # the waiting name is shown
    if db.get_bind().dialect.name == "postgresql":
        assert sum(signing.COUNTED_TOGETHER.values()) >= 1, "no batch was counted together"


def test_the_same_link_used_twenty_times_at_once_counts_once(settings, letter, db):
    people: list[Person] = [("racer@microsoft.com", "Racer", True)]
    _, results = run_race(settings, people, [0] * 20)

    confirmed = successes(results)
    assert len(confirmed) == 1
    assert confirmed[0].outcome == "verified"
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 19
    assert all(isinstance(error, TokenError) for error in refused)
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 1, 0)
    assert c["orgs"] == {"Microsoft": 1}


def test_several_links_for_one_person_at_once_count_once(settings, letter, db):
    # The same person asked five times (the per-address limit), as typed in different ways.
    people: list[Person] = [
        (address, "", False)
        for address in [
            "Same.Person@microsoft.com",
            "same.person@MICROSOFT.com",
            "same.person+letters@microsoft.com",
            "SAME.PERSON@microsoft.com",
            "same.person+x@microsoft.com",
        ]
    ]
    _, results = run_race(settings, people, list(range(len(people))))

    confirmed = successes(results)
    assert len(confirmed) == len(people)  # every link works; only the first counts
    assert sorted(result.outcome for result in confirmed) == ["updated"] * 4 + ["verified"]
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"], c["rows"]) == (1, 0, 1, 1)
    assert c["orgs"] == {"Microsoft": 1}


def test_one_person_racing_named_and_hidden_links_keeps_counts_consistent(settings, letter, db):
    # Twelve people, each with eight links alternating named and hidden, all used at once
    # and shuffled: each person counts once, and whichever link commits last decides
    # whether the name shows. named + hidden must equal verified whatever the order.
    settings = settings.model_copy(update={"limit_per_address": 50})
    people: list[Person] = []
    for person in range(12):
        domain = "github.com" if person % 4 == 0 else "microsoft.com"
        for attempt in range(8):
            show_name = (attempt + person) % 2 == 0
            people.append((f"mixed.{person}@{domain}", f"Mixed {person} v{attempt}", show_name))
    order = list(range(len(people)))
    random.Random(7).shuffle(order)
    _, results = run_race(settings, people, order)

    confirmed = successes(results)
    assert len(confirmed) == len(people)
    outcomes = Counter(result.outcome for result in confirmed)
    assert outcomes == {"verified": 12, "updated": len(people) - 12}
    c = assert_consistent(db)
    assert c["verified"] == c["rows"] == 12
    assert c["named"] + c["hidden"] == 12
    assert c["orgs"] == {"Microsoft": 9, "GitHub": 3}
    # Each stored signature carries the details of one of that person's own links.
    db.rollback()
    offered = {(name, show) for _, name, show in people}
    for signature in db.exec(select(Signature)).all():
        assert (names_of(signature)[0], signature.show_name) in offered


# --- several processes ------------------------------------------------------------------


def confirm_in_process(database_url: str, secret_key: str, tokens: list[str]) -> list[str]:
    """Runs in a fresh process: its own engine and pool, racing the other processes."""
    settings = Settings(
        environment="test",
        database_url=database_url,
        secret_key=secret_key,
        smtp_url="",
        db_pool_size=5,  # three processes stay well under PostgreSQL's max_connections
        db_max_overflow=5,
        _env_file=None,  # type: ignore[call-arg]
    )

    async def main() -> list[str]:
        async with writer_sessions(settings) as maker:
            results = await confirm_all(maker, settings, tokens)
        return [
            result.outcome
            if isinstance(result, Confirmation)
            else ("used" if isinstance(result, LinkUsed) else repr(result))
            for result in results
        ]

    return asyncio.run(main())


def test_processes_racing_over_the_same_links_count_each_person_once(settings, letter, db):
    people = many_people(30, seed=2)
    # Two extra links for person 0 (already in the list) so re-confirmations race too.
    people += [(people[0][0], "Person 0 again", True), (people[0][0], "", False)]

    async def create() -> list[str]:
        async with writer_sessions(settings) as maker:
            return await request_links(maker, settings, people)

    tokens = asyncio.run(create())
    processes = 3
    orders = [random.Random(seed).sample(tokens, len(tokens)) for seed in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(confirm_in_process, settings.database_url, settings.secret_key, order)
            for order in orders
        ]
        outcomes = Counter(o for future in futures for o in future.result(timeout=60))

    # Every link is used exactly once across all processes; the rest see it as used.
    assert set(outcomes) <= {"verified", "updated", "used"}, outcomes
    assert outcomes["verified"] == 30
    assert outcomes["updated"] == 2
    assert outcomes["used"] == processes * len(tokens) - len(tokens)
    c = assert_consistent(db)
    assert c["verified"] == c["rows"] == 30
    expected_orgs = Counter(ORGANIZATIONS[email.split("@")[1]] for email, _, _ in people[:30])
    assert c["orgs"] == dict(expected_orgs)


def test_readers_during_the_race_always_see_counts_that_add_up(settings, letter):
    """What a page reads mid-storm must satisfy verified == named + hidden == sum(orgs)."""
    from letters.db import reader
    from letters.record.public import load_snapshot

    people = many_people(120, seed=3)
    seen: list[tuple[int, int, int, int]] = []

    async def main() -> None:
        engine = make_async_engine(settings)
        try:
            writers = make_sessionmaker(writer(engine))
            readers = make_sessionmaker(reader(engine))
            tokens = await request_links(writers, settings, people)
            done = asyncio.Event()

            async def poll() -> None:
                while not done.is_set():
                    async with readers() as session:
                        snap = await load_snapshot(session, "test-letter", 10)
                    tally = snap.tally
                    orgs = sum(count for _, count in tally.organizations)
                    seen.append((tally.verified, tally.named, tally.hidden, orgs))
                    await asyncio.sleep(0)

            pollers = [asyncio.ensure_future(poll()) for _ in range(3)]
            results = await confirm_all(writers, settings, tokens)
            done.set()
            await asyncio.gather(*pollers)
            assert len(successes(results)) == len(people)
        finally:
            await engine.dispose()

    asyncio.run(main())
    # Some reads came in the middle of the race, whatever its speed on this machine.
    assert any(0 < s[0] < len(people) for s in seen), seen
    broken = [s for s in seen if not s[0] == s[1] + s[2] == s[3]]
    assert broken == [], f"{len(broken)} of {len(seen)} reads did not add up: {broken[:5]}"
    assert max(s[0] for s in seen) <= len(people)


def test_deliveries_racing_confirmations_each_sign_the_ledger_just_before_them(
    settings, letter, db
):
    """Each `delivered` entry follows exactly the ledger its snapshot signed, and counts
    what was counted then, however confirmations interleave."""
    from letters.models import LedgerEntry, utcnow
    from letters.record import delivery, ledger, snapshots

    key = snapshots.signing_key(settings.secret_key)
    people = many_people(30, seed=7)

    async def main() -> list[Any]:
        async with writer_sessions(settings) as maker:
            tokens = await request_links(maker, settings, people)
            signer = Signer(settings.secret_key)
            start = asyncio.Event()

            async def confirm_one(token: str) -> Any:
                await start.wait()
                async with maker() as session:
                    return await confirm(session, token, signer, settings)

            async def deliver_one(number: int) -> Any:
                await start.wait()
                handover = delivery.Handover(f"Recipient {number}", utcnow().date(), 1)
                text = LetterVersion(
                    letter_id=letter.id, number=1, title="Test letter", body="Body"
                )
                async with maker() as session:
                    row, _ = await delivery.deliver(
                        session,
                        letter.id,
                        handover,
                        text,
                        key=key,
                        settings=settings,
                        author_id=None,
                        now=utcnow(),
                    )
                    await session.commit()
                    return row

            tasks = [asyncio.ensure_future(confirm_one(t)) for t in tokens]
            tasks[5:5] = [asyncio.ensure_future(deliver_one(n)) for n in range(6)]
            await asyncio.sleep(0)
            start.set()
            return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, [repr(e) for e in errors]
    c = assert_consistent(db)  # the ledger verifies and recounts to the counters
    assert c["verified"] == len(people)
    db.rollback()
    entries = {e.seq: e for e in db.exec(select(LedgerEntry)).all()}
    delivered = [e for e in entries.values() if e.kind == "delivered"]
    assert len(delivered) == 6
    jwks = snapshots.public_jwks(key)
    for row in [r for r in results if not isinstance(r, Confirmation)]:
        _, payload = snapshots.verify(row.snapshot, jwks)
        entry = entries[row.ledger_seq]
        assert payload["ledger"]["length"] == entry.seq - 1
        assert payload["ledger"]["head"] == entry.prev_hash
        signed_before = ledger.verify(
            ledger.public_entry(entries[seq]) for seq in range(1, entry.seq)
        )
        assert payload["verified_count"] == signed_before.verified == row.verified_count
