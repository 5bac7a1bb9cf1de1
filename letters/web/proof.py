"""The checkable record: ledger download, signed snapshots, the public key, receipts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from letters.i18n import gettext
from letters.models import LedgerKind
from letters.record import ledger, snapshots
from letters.record.public import LetterNotFound, LetterSnapshot
from letters.record.public import delivered_snapshot as delivered_snapshot_of
from letters.web import cache
from letters.web.api import error, not_found, public_letter
from letters.web.common import (
    cached_letter_answer,
    conditional,
    db_session,
    etag_for,
    letter_snapshot,
    settings_of,
)
from letters.web.security import BODY_ERRORS, CSRFError, check_csrf

LEDGER_BATCH = 2000
MAX_RECEIPT = 100


def _after(request: Request) -> int | None:
    text = request.query_params.get("after", "0")
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    return int(text)


async def ledger_download(request: Request) -> Response:
    """`/api/letters/{slug}/ledger`: the ledger as JSON Lines, one entry per line.

    `?after=N` starts after entry N, for readers keeping a copy up to date. The download
    ends at the length the letter had when it started, so it is always a whole chain.
    """
    slug = request.path_params["slug"]
    after = _after(request)
    if after is None:
        return error(400, "invalid_parameter", "after must be an entry number.", "after")
    try:
        letter = (await letter_snapshot(request, slug)).letter
    except LetterNotFound:
        return not_found()
    until = letter.ledger_length
    # The head names the chain; updated_at moves when a name in it is blanked.
    # updated_at in full: two changes within one second must still change the ETag.
    updated = letter.updated_at.isoformat() if letter.updated_at else ""
    etag = etag_for(letter.ledger_head, updated, str(after))
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=5",
        "Content-Disposition": f'inline; filename="{slug}-ledger.jsonl"',
        "X-Ledger-Length": str(until),
        "X-Ledger-Head": letter.ledger_head,
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)

    async def lines() -> AsyncIterator[bytes]:
        position = after
        while position < until:
            async with db_session(request) as session:
                batch = await ledger.read_entries(
                    session,
                    letter.id,
                    position,
                    until,
                    LEDGER_BATCH,
                )
            if not batch:
                return
            yield b"".join(
                json.dumps(ledger.public_entry(entry), ensure_ascii=False).encode() + b"\n"
                for entry in batch
            )
            position = batch[-1].seq

    return StreamingResponse(lines(), media_type="application/jsonl", headers=headers)


def snapshot_payload(request: Request, snapshot: LetterSnapshot) -> dict[str, Any]:
    return snapshots.payload(settings_of(request).base_url, snapshot.letter, snapshot.tally)


@public_letter
async def snapshot(request: Request, shown: LetterSnapshot) -> Response:
    """`/api/letters/{slug}/snapshot`: the counts and ledger head as a signed JWS."""
    slug = request.path_params["slug"]

    async def load() -> tuple[bytes, str]:
        payload = snapshot_payload(request, shown)
        body = snapshots.sign(request.app.state.snapshot_key, payload).encode()
        return body, etag_for(body)

    key = cache.key("snapshot", slug)
    return await cached_letter_answer(
        request, shown, key, load, "application/jose", "public, max-age=1"
    )


@public_letter
async def delivered_snapshot(request: Request, shown: LetterSnapshot) -> Response:
    """`/api/letters/{slug}/deliveries/{seq}/snapshot`: the signed snapshot delivered with
    ledger entry `seq`, byte for byte as attached; the entry's digest is its SHA-256."""
    slug, number = request.path_params["slug"], request.path_params["seq"]
    letter = shown.letter
    token = None
    seq = int(number) if number.isascii() and number.isdigit() and len(number) <= 9 else 0
    if seq > 0:
        async with db_session(request) as session:
            token = await delivered_snapshot_of(session, letter, seq)
    if token is None:
        return error(404, "not_found", "No delivery was recorded with this ledger entry.")
    body = token.encode()
    headers = {"Content-Disposition": f'inline; filename="{slug}-delivery-{seq}.jws"'}
    return conditional(
        request, body, etag_for(body), "application/jose", "public, max-age=86400", headers
    )


async def jwks(request: Request) -> Response:
    """`/.well-known/jwks.json`: the public key that signs snapshots, and those that signed
    them before a key change (OLD_SECRET_KEYS)."""
    state = request.app.state
    return JSONResponse(
        snapshots.public_jwks(state.snapshot_key, state.older_snapshot_keys),
        headers={"Cache-Control": "public, max-age=3600"},
    )


def _render(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "letters/receipt.html",
        context,
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
    return response


async def receipt(request: Request) -> Response:
    """`/letters/{slug}/receipt`: a signer checks their receipt against the ledger.

    A POST, so the receipt stays out of addresses, histories and access logs.
    """
    slug = request.path_params["slug"]
    try:
        letter = (await letter_snapshot(request, slug)).letter
    except LetterNotFound:
        raise HTTPException(404) from None
    context: dict[str, Any] = {"letter": letter, "entries": None, "error": None, "receipt": ""}
    if request.method != "POST":
        return _render(request, context)
    try:
        form = await request.form(max_files=0, max_fields=5, max_part_size=4096)
        check_csrf(request, form)
    except BODY_ERRORS:
        raise
    except CSRFError:
        context["error"] = gettext(
            "This page expired before you pressed the button. Please try again."
        )
        return _render(request, context, 403)
    except Exception:  # a malformed form body
        context["error"] = gettext("The form could not be read.")
        return _render(request, context, 400)
    text = form.get("receipt")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_RECEIPT:
        context["error"] = gettext("Paste the receipt shown when you confirmed your signature.")
        return _render(request, context, 422)
    async with db_session(request) as session:
        entries = await ledger.find_receipt(session, letter.id, text)
    context["receipt"] = text.strip()
    if not entries:
        context["error"] = gettext(
            "No entry of this letter's ledger matches this receipt. Check that you copied all "
            "of it, and that it is a receipt for this letter."
        )
        return _render(request, context, 404)
    context["entries"] = entries
    context["counted"] = ledger.EFFECT[LedgerKind(entries[-1].kind)] >= 0
    return _render(request, context)


routes = [
    Route("/api/letters/{slug}/ledger", ledger_download, name="api_ledger"),
    Route("/api/letters/{slug}/snapshot", snapshot, name="api_snapshot"),
    Route(
        "/api/letters/{slug}/deliveries/{seq}/snapshot",
        delivered_snapshot,
        name="api_delivered_snapshot",
    ),
    Route("/.well-known/jwks.json", jwks, name="jwks"),
    Route("/letters/{slug}/receipt", receipt, methods=["GET", "POST"], name="receipt"),
]
