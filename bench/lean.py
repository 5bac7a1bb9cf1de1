"""The lean reference for the signing storm: the same guarantees, written straight on psycopg.

    python -m bench.serve bench.lean:create_app --port 8002 --workers 2

Answers the two requests bench/storm.lua sends, on the app's own schema and database, with
the app's settings from the environment (DATABASE_URL, SECRET_KEY, BASE_URL, SMTP_URL,
LINK_MAX_AGE, LIMIT_*), so its runs are checked by the same `bench.common.exact` and
`letters verify-ledger`:

- `POST /api/letters/{slug}/signatures {"email", "name", "title", "show_name"}`: the
  address parsed and matched against the letter's domains (the app's own parsing), then
  one transaction: the three rate-limit upserts (per address, IP and domain) in one
  statement, the pending signature, the email with its link in the outbox (sealed), already
  leased to this process. Answers 202, then sends the email in one new SMTP session and
  deletes the outbox row (a crash between the two leaves the email to be sent again, as
  the app's outbox guarantees).
- `POST /api/verify {"token"}`: the link read (itsdangerous, as the app's links), then one
  transaction: claim the link once (`UPDATE … WHERE used_at IS NULL`), insert the
  signature unique per person (`ON CONFLICT DO NOTHING`), move the organization's and
  the day's counts, then the letter's counters and ledger length (`RETURNING` the chain's
  head), insert the hash-chained ledger entry (format v1, hashed in Python) and set the
  new head; commit. Answers `{"status": "verified", "receipt": …}` once that committed.

Nothing else: no pages, no ORM, no cache, no reveal thresholds, milestones or blocks,
no re-confirmation (the storm never confirms an address twice). It is the yardstick the
app is compared with in the same run (bench/storm.py), not a second implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
import psycopg
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from letters.domains import match_domain
from letters.forms import FieldError, SignatureInput
from letters.mail import outbox
from letters.mail.backend import Message, build_email
from letters.record import ledger, links, names
from letters.settings import Settings
from letters.tokens import Signer, TokenError, hash_nonce, new_nonce

# The reference's own pool, fixed with it (the yardstick must not move with the app's
# settings): 10 connections per process, waited for when all are in use. Tried at 20,
# it confirmed fewer (more of its transactions queue on the letter's row at once).
POOL = 10

UPSERT_LIMITS = """
INSERT INTO rate_limit_hit (key, window_start, hits, expires_at)
VALUES (%(k1)s, %(w)s, 1, %(e)s), (%(k2)s, %(w)s, 1, %(e)s), (%(k3)s, %(w)s, 1, %(e)s)
ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1
RETURNING key, hits
"""
INSERT_PENDING = """
INSERT INTO pending_signature (letter_id, email_hash, domain, organization, sealed_name,
    show_name, reveal_at, nonce_hash, created_at, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""
INSERT_OUTBOX = """
INSERT INTO outbox_message (id, sealed, created_at, next_attempt_at, locked_until, attempts)
VALUES (%s, %s, %s, %s, %s, 0)
"""
CLAIM = """
UPDATE pending_signature SET used_at = %(now)s
WHERE id = %(id)s AND nonce_hash = %(nonce)s AND used_at IS NULL AND expires_at > %(now)s
RETURNING letter_id, email_hash, domain, organization, sealed_name, nonce_hash, show_name
"""
INSERT_SIGNATURE = """
INSERT INTO signature (letter_id, email_hash, domain, organization, name, title, sealed_name,
    show_name, commitment, verified_at, updated_at, letter_version, name_hidden_by_authors)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, false)
ON CONFLICT (letter_id, email_hash) DO NOTHING RETURNING id
"""
COUNT_ORGANIZATION = """
INSERT INTO organization_count (letter_id, organization, count) VALUES (%s, %s, 1)
ON CONFLICT (letter_id, organization) DO UPDATE SET count = organization_count.count + 1
"""
COUNT_DAY = """
INSERT INTO daily_count (letter_id, day, organization, count) VALUES (%s, %s, %s, 1)
ON CONFLICT (letter_id, day, organization) DO UPDATE SET count = daily_count.count + 1
"""
COUNT_LETTER = """
UPDATE letter SET verified_count = verified_count + 1, named_count = named_count + %s,
    hidden_count = hidden_count + %s, updated_at = %s, ledger_length = ledger_length + 1
WHERE id = %s RETURNING ledger_length, ledger_head
"""
INSERT_ENTRY = """
INSERT INTO ledger_entry (letter_id, seq, kind, day, organization, named, name, title,
    name_salt, name_digest, commitment, prev_hash, entry_hash)
VALUES (%s, %s, 'signed', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
SET_HEAD = "UPDATE letter SET ledger_head = %s WHERE id = %s"


@dataclass(frozen=True)
class Rule:
    domain: str
    organization: str
    include_subdomains: bool


class Pool:
    """Up to POOL psycopg connections per process, opened as needed, dropped when broken."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(POOL)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.slots:
            conn = self.idle.pop() if self.idle else await psycopg.AsyncConnection.connect(self.url)
            try:
                yield conn
            except BaseException:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self.idle.append(conn)
                raise
            self.idle.append(conn)


class Lean:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = Signer(settings.secret_key)
        self.pool = Pool(settings.sync_database_url.replace("postgresql+psycopg", "postgresql"))
        self.letters: dict[str, tuple[int, list[Rule]]] = {}

    async def letter(self, slug: str) -> tuple[int, list[Rule]] | None:
        if slug not in self.letters:
            async with self.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT id FROM letter WHERE slug = %s AND status = 'published'", (slug,)
                    )
                ).fetchone()
                if row is None:
                    return None
                rules = await (
                    await conn.execute(
                        "SELECT domain, organization, include_subdomains FROM allowed_domain "
                        "WHERE letter_id = %s",
                        (row[0],),
                    )
                ).fetchall()
                await conn.rollback()
            self.letters[slug] = (row[0], [Rule(*rule) for rule in rules])
        return self.letters[slug]

    async def sign(self, request: Request) -> Response:
        found = await self.letter(request.path_params["slug"])
        if found is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        letter_id, rules = found
        try:
            form = SignatureInput.parse(await request.json())
        except FieldError as error:
            return JSONResponse({"error": error.code}, status_code=422)
        rule = match_domain(form.address.domain, rules)
        if rule is None:
            return JSONResponse({"error": "domain_not_allowed"}, status_code=422)
        settings, signer, now = self.settings, self.signer, datetime.now(UTC)
        email_hash = signer.email_hash(form.address.canonical)
        epoch = int(now.timestamp())
        window = epoch - epoch % settings.limit_window
        host = request.client.host if request.client else "unknown"
        limits = {
            f"addr:{email_hash[:40]}": settings.limit_per_address,
            "ip:" + signer.key_hash("ip", host): settings.limit_per_ip,
            "dom:" + signer.key_hash("domain", form.address.domain): settings.limit_per_domain,
        }
        keys = list(limits)
        nonce = new_nonce()
        async with self.pool.connection() as conn, conn.transaction():
            hits = await (
                await conn.execute(
                    UPSERT_LIMITS,
                    {
                        "k1": keys[0],
                        "k2": keys[1],
                        "k3": keys[2],
                        "w": window,
                        "e": now + timedelta(seconds=settings.limit_window + 1),
                    },
                )
            ).fetchall()
            if any(count > limits[key] for key, count in hits):
                raise _Refused
            pending_id = (
                await (
                    await conn.execute(
                        INSERT_PENDING,
                        (
                            letter_id,
                            email_hash,
                            form.address.domain,
                            rule.organization,
                            # Sealed, as the app keeps them (letters.record.names).
                            names.seal(
                                settings.keys,
                                form.name,
                                form.title,
                                names.of_pending_row(hash_nonce(nonce)),
                            ),
                            form.show_name,
                            form.reveal_at,
                            hash_nonce(nonce),
                            now,
                            now + timedelta(seconds=settings.link_max_age),
                        ),
                    )
                ).fetchone()
            )[0]  # type: ignore[index]
            token = links.make(signer, links.SIGNER, pending_id, nonce)
            link = f"{settings.base_url}/verify/{token}"
            text = f"Open this link to confirm your email address:\n\n{link}\n"
            html = (
                "<p>Open this link to confirm your email address:</p>"
                f'<p><a href="{link}">{link}</a></p>'
            )
            message = Message(form.address.email, "Confirm your email address", text, html)
            # Sealed, as the app queues it (letters.mail.outbox).
            outbox_id = outbox.new_id()
            sealed = outbox.seal(settings.keys, message, outbox_id)
            await conn.execute(
                INSERT_OUTBOX, (outbox_id, sealed, now, now, now + timedelta(seconds=60))
            )
        return JSONResponse(
            {"status": "check_your_email"},
            status_code=202,
            background=BackgroundTask(self.send, message, outbox_id),
        )

    async def send(self, message: Message, outbox_id: int) -> None:
        smtp = self.settings.smtp
        assert smtp is not None
        await aiosmtplib.send(
            build_email(message, self.settings.sender),
            hostname=smtp.host,
            port=smtp.port,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout,
        )
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM outbox_message WHERE id = %s", (outbox_id,))
            await conn.commit()

    async def verify(self, request: Request) -> Response:
        token = (await request.json()).get("token")
        try:
            pending_id, nonce = links.read(
                self.signer, links.SIGNER, token, self.settings.link_max_age
            )
        except TokenError as error:
            return JSONResponse({"error": error.code}, status_code=400)
        now = datetime.now(UTC)
        day = now.date().isoformat()
        receipt = ledger.new_receipt()
        commitment = ledger.commitment(receipt)
        async with self.pool.connection() as conn, conn.transaction():
            pending = await (
                await conn.execute(
                    CLAIM, {"now": now, "id": pending_id, "nonce": hash_nonce(nonce)}
                )
            ).fetchone()
            if pending is None:
                raise _Used
            letter_id, email_hash, domain, organization, sealed, nonce_hash, named = pending
            keys = self.settings.keys
            name, title = names.unseal(keys, sealed, names.of_pending_row(nonce_hash))
            columns = names.signature_columns(keys, letter_id, email_hash, named, name, title)
            inserted = await (
                await conn.execute(
                    INSERT_SIGNATURE,
                    (
                        letter_id,
                        email_hash,
                        domain,
                        organization,
                        columns["name"],
                        columns["title"],
                        columns["sealed_name"],
                        named,
                        commitment,
                        now,
                        now,
                    ),
                )
            ).fetchone()
            if inserted is None:
                return JSONResponse({"status": "verified", "outcome": "updated"})
            await conn.execute(COUNT_ORGANIZATION, (letter_id, organization))
            await conn.execute(COUNT_DAY, (letter_id, day, organization))
            seq, prev = await (
                await conn.execute(COUNT_LETTER, (int(named), int(not named), now, letter_id))
            ).fetchone()  # type: ignore[misc]
            salt = secrets.token_hex(16) if named else ""
            digest = ledger.name_digest(salt, name, title) if named else ""
            entry = {
                "seq": seq,
                "kind": "signed",
                "day": day,
                "organization": organization,
                "named": named,
                "name_digest": digest,
                "commitment": commitment,
                "prev": prev,
            }
            entry_hash = ledger.entry_hash(entry)
            await conn.execute(
                INSERT_ENTRY,
                (
                    letter_id,
                    seq,
                    day,
                    organization,
                    named,
                    name if named else "",
                    title if named else "",
                    salt,
                    digest,
                    commitment,
                    prev,
                    entry_hash,
                ),
            )
            await conn.execute(SET_HEAD, (entry_hash, letter_id))
        return JSONResponse(
            {"status": "verified", "outcome": "verified", "receipt": receipt},
            headers={"Cache-Control": "no-store"},
        )


class _Refused(Exception):
    pass


class _Used(Exception):
    pass


def create_app() -> Starlette:
    lean = Lean(Settings())

    async def refused(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "rate_limited"}, status_code=429)

    async def used(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "invalid_token"}, status_code=400)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/api/letters/{slug}/signatures", lean.sign, methods=["POST"]),
            Route("/api/verify", lean.verify, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        exception_handlers={_Refused: refused, _Used: used},
    )
