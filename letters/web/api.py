"""The public JSON interface. Its shapes are documented in README.md; keep them stable."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from letters.forms import FieldError
from letters.models import Letter
from letters.ratelimit import RateLimited
from letters.record.public import (
    LetterNotFound,
    LetterSnapshot,
    list_public_letters,
    named_signatures,
)
from letters.record.signing import LetterClosed, confirm
from letters.tokens import TokenError
from letters.web import cache
from letters.web.common import (
    cached,
    conditional,
    credit_confirmation,
    db_session,
    etag_for,
    forget_letter,
    in_transaction,
    letter_snapshot,
    send_soon,
    settings_of,
    sign_request,
    tag_answer,
    version,
)

DEFAULT_PAGE = 100
MAX_PAGE = 500
MAX_JSON_BYTES = 16 * 1024
# Readers reloading to watch a count can be served by any shared cache for a second.
PUBLIC_CACHING = "public, max-age=1"
EVENT_INTERVAL = 1.0
EVENT_STREAM_SECONDS = 300
KEEPALIVE_SECONDS = 15


def error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def not_found() -> JSONResponse:
    return error(404, "not_found", "No published letter has this address.")


LetterView = Callable[[Request, LetterSnapshot], Awaitable[Response]]


def public_letter(view: LetterView) -> Callable[[Request], Awaitable[Response]]:
    """A view of the public letter named by the path's `slug`, given its snapshot;
    `not_found()` where there is none."""

    @functools.wraps(view)
    async def with_snapshot(request: Request) -> Response:
        try:
            snapshot = await letter_snapshot(request, request.path_params["slug"])
        except LetterNotFound:
            return not_found()
        return await view(request, snapshot)

    return with_snapshot


def iso(moment: datetime | None) -> str | None:
    """A moment as the API writes it: UTC, to the second (`2026-11-30T14:05:09Z`)."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z") if moment else None


def iso_day(moment: datetime | None) -> str | None:
    """A day (`2026-11-30`, UTC): when a signature was made, no more precisely than the
    public ledger keeps it."""
    return moment.date().isoformat() if moment else None


def letter_url(request: Request, letter: Letter) -> str:
    return f"{settings_of(request).base_url}/letters/{letter.slug}"


async def read_json(request: Request) -> dict[str, Any] | JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return error(415, "unsupported_media_type", "Send the request body as application/json.")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        return error(413, "body_too_large", "The request body is too large.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        return error(400, "invalid_json", "The request body is not valid JSON.")
    if not isinstance(data, dict):
        return error(400, "invalid_json", "The request body must be a JSON object.")
    return data


def json_bytes(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


async def cached_json(
    request: Request, key: tuple[Hashable, ...], build: Any, tags: list[Hashable]
) -> Response:
    """A cached JSON answer with ETag; `build()` makes the data on a cache miss."""

    async def load() -> tuple[bytes, str]:
        body = json_bytes(await build())
        return body, etag_for(body)

    body, etag = await cached(request, key, load, tags)
    return conditional(request, body, etag, "application/json", PUBLIC_CACHING)


async def list_letters(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        async with db_session(request) as session:
            letters = await list_public_letters(session)
        return {
            "letters": [
                {
                    "slug": letter.slug,
                    "title": letter.title,
                    "status": letter.status,
                    "verified_count": letter.verified_count,
                    "url": letter_url(request, letter),
                }
                for letter in letters
            ]
        }

    tag_answer(request, cache.LISTS)
    return await cached_json(request, cache.key("api-letters"), build, [cache.LISTS])


def letter_json(request: Request, snapshot: LetterSnapshot) -> dict[str, Any]:
    letter, counts = snapshot.letter, snapshot.tally
    return {
        "slug": letter.slug,
        "title": letter.title,
        "status": letter.status,
        "url": letter_url(request, letter),
        "published_at": iso(letter.published_at),
        "closed_at": iso(letter.closed_at),
        "allowed_domains": sorted(rule.domain for rule in snapshot.domains),
        "verified_count": counts.verified,
        "named_count": counts.named,
        "hidden_count": counts.hidden,
        "organizations": [{"name": name, "count": count} for name, count in counts.organizations],
        "updated_at": iso(counts.updated_at),
        "ledger": {
            "length": letter.ledger_length,
            "head": letter.ledger_head,
            "url": f"{settings_of(request).base_url}/api/letters/{letter.slug}/ledger",
        },
    }


async def snapshot_json(
    request: Request,
    snapshot: LetterSnapshot,
    name: str,
    to_json: Callable[[Request, LetterSnapshot], dict[str, Any]],
) -> Response:
    """`to_json` of the letter, cached under `name` until the letter changes."""

    async def build() -> dict[str, Any]:
        return to_json(request, snapshot)

    key = cache.key(name, request.path_params["slug"], *version(snapshot))
    return await cached_json(request, key, build, [cache.letter_tag(snapshot.letter.id)])


@public_letter
async def letter_detail(request: Request, snapshot: LetterSnapshot) -> Response:
    return await snapshot_json(request, snapshot, "api-letter", letter_json)


def deliveries_json(request: Request, snapshot: LetterSnapshot) -> dict[str, Any]:
    """The letter's deliveries and what came of them, oldest first."""
    slug = snapshot.letter.slug
    base = settings_of(request).base_url
    return {
        "deliveries": [
            {
                "recipient": item.recipient,
                "method": item.method,
                "delivered_on": item.delivered_on,
                "version": item.version,
                "verified_count": item.verified_count,
                "recorded_at": iso(item.recorded_at),
                "state": item.state or None,
                "ledger_seq": item.ledger_seq,
                "digest": item.digest,
                "snapshot_url": f"{base}/api/letters/{slug}/deliveries/{item.ledger_seq}/snapshot",
            }
            for item in snapshot.deliveries
        ],
        "follow_ups": [
            {
                "kind": item.kind,
                "date": item.happened_on,
                "source": item.source or None,
                "text": item.text,
                "recorded_at": iso(item.recorded_at),
            }
            for item in snapshot.follow_ups
        ],
    }


@public_letter
async def deliveries(request: Request, snapshot: LetterSnapshot) -> Response:
    return await snapshot_json(request, snapshot, "api-deliveries", deliveries_json)


@dataclass
class OpenStreams:
    """The live count streams this process serves now (capped by EVENT_STREAMS_MAX)."""

    open: int = 0


async def events(request: Request) -> Response:
    """Server-Sent Events: the letter's JSON again each time its counts change.

    Each stream reads the per-process cache once a second, so a thousand open pages cost
    the database no more than one. Streams end after a few minutes; browsers reconnect.
    """
    slug = request.path_params["slug"]
    try:
        await letter_snapshot(request, slug)
    except LetterNotFound:
        return not_found()
    streams: OpenStreams = request.app.state.event_streams
    if streams.open >= settings_of(request).event_streams_max:
        # The page keeps its count by polling the JSON API instead (static/js/live.js).
        response = error(503, "too_many_streams", "Too many live streams: poll the letter instead.")
        response.headers["Retry-After"] = str(EVENT_STREAM_SECONDS)
        return response

    async def stream() -> AsyncIterator[str]:
        # Counted from here: a generator that never starts never runs its `finally`.
        streams.open += 1
        try:
            last: tuple[object, ...] | None = None
            quiet_since = started = time.monotonic()
            yield "retry: 3000\n\n"
            while time.monotonic() - started < EVENT_STREAM_SECONDS:
                try:
                    snapshot = await letter_snapshot(request, slug)
                except LetterNotFound:
                    return
                current = version(snapshot)
                if current != last:
                    last, quiet_since = current, time.monotonic()
                    data = json.dumps(letter_json(request, snapshot), separators=(",", ":"))
                    yield f"event: count\ndata: {data}\n\n"
                elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_INTERVAL)
        finally:
            streams.open -= 1

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def signatures(request: Request) -> Response:
    if request.method == "POST":
        return await sign(request)
    signer = request.app.state.signer
    limit_text = request.query_params.get("limit", str(DEFAULT_PAGE))
    digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4
    if not digits or not 1 <= int(limit_text) <= MAX_PAGE:
        return error(400, "invalid_parameter", f"limit must be 1 to {MAX_PAGE}.", "limit")
    limit = int(limit_text)
    after_id = None
    after = request.query_params.get("after")
    if after:
        try:
            after_id = signer.loads_cursor(after)
        except ValueError:
            return error(400, "invalid_cursor", "after is not a cursor from this API.", "after")
    slug = request.path_params["slug"]
    try:
        letter = (await letter_snapshot(request, slug)).letter
    except LetterNotFound:
        return not_found()

    async def build() -> dict[str, Any]:
        async with db_session(request) as session:
            rows, next_id = await named_signatures(session, letter, after_id, limit)
        return {
            "signatures": [
                {
                    "name": row.name,
                    "title": row.title or None,
                    "organization": row.organization,
                    "signed_at": iso_day(row.verified_at),
                }
                for row in rows
            ],
            "next": signer.dumps_cursor(next_id) if next_id is not None else None,
        }

    key = cache.key("api-names", slug, after_id, limit)
    return await cached_json(request, key, build, [cache.letter_tag(letter.id)])


async def sign(request: Request) -> Response:
    data = await read_json(request)
    if isinstance(data, JSONResponse):
        return data
    slug = request.path_params["slug"]
    try:
        link = await sign_request(request, slug, data)
    except LetterNotFound:
        return not_found()
    except LetterClosed as closed:
        forget_letter(request, closed.letter_id, rules=True)
        return error(409, "letter_closed", "This letter has closed and no longer takes signatures.")
    except FieldError as problem:
        return error(422, problem.code, problem.message, problem.field)
    except RateLimited as limited:
        response = error(429, "rate_limited", "Too many requests. Please wait and try again.")
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    return JSONResponse(
        {"status": "check_your_email"},
        status_code=202,
        background=send_soon(request, link.leased or link.outbox_id),
    )


async def verify(request: Request) -> Response:
    data = await read_json(request)
    if isinstance(data, JSONResponse):
        return data
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > 1000:
        return error(400, "invalid_token", "token must be the token from the link.", "token")
    signer, settings = request.app.state.signer, settings_of(request)
    try:
        result = await in_transaction(
            request, lambda session: confirm(session, token, signer, settings)
        )
    except TokenError as problem:
        return error(400, problem.code, problem.message, "token")
    except LetterClosed:
        return error(409, "letter_closed", "This letter has closed and no longer takes signatures.")
    forget_letter(request, result.letter.id)
    credit_confirmation(request, result)
    # The receipt is shown once, here, and never stored; only its hash is in the ledger.
    return JSONResponse(
        {
            "status": "verified",
            "outcome": result.outcome,
            "letter": result.letter.slug,
            "receipt": result.receipt,
        },
        headers={"Cache-Control": "no-store"},
    )


routes = [
    Route("/api/letters", list_letters, name="api_letters"),
    Route("/api/letters/{slug}", letter_detail, name="api_letter"),
    Route("/api/letters/{slug}/events", events, name="api_events"),
    Route("/api/letters/{slug}/deliveries", deliveries, name="api_deliveries"),
    Route(
        "/api/letters/{slug}/signatures", signatures, methods=["GET", "POST"], name="api_signatures"
    ),
    Route("/api/verify", verify, methods=["POST"], name="api_verify"),
]
