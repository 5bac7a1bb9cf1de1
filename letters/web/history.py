"""Public pages of a letter's versions: the history with how many signed each version and
everything that happened to the letter (deliveries, replies, outcomes…), every version's
text, and the differences between any two. Readable without JavaScript."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letters import i18n
from letters.authors import revisions
from letters.record.timeline import letter_events
from letters.web import cache
from letters.web.common import cached, conditional, db_session, etag_for, letter_snapshot, version

CACHING = "private, no-cache"  # revalidate every time; the ETag makes that cheap


def _page(request: Request, template: str, context: dict[str, object]) -> tuple[bytes, str]:
    body = request.app.state.templates.get_template(template).render(context).encode()
    return body, etag_for(body)


async def history(request: Request) -> Response:
    """`/letters/{slug}/history`: every version, newest first, with its note and signers."""
    slug = request.path_params["slug"]

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            versions = await revisions.history(session, snapshot.letter)
            events = await letter_events(
                session, snapshot.letter, snapshot.deliveries, snapshot.follow_ups
            )
        context = {
            "letter": snapshot.letter,
            "versions": versions,
            "tally": snapshot.tally,
            "events": events,
        }
        context["here"] = request.app.url_path_for("history", slug=slug)
        return _page(request, "letters/history.html", context)

    snapshot = await letter_snapshot(request, slug)
    key = cache.key("history", slug, i18n.current(), *version(snapshot))
    body, etag = await cached(request, key, load, [cache.letter_tag(snapshot.letter.id)])
    return conditional(request, body, etag, "text/html; charset=utf-8", CACHING)


def _number(text: str | None) -> int | None:
    if text and text.isascii() and text.isdigit() and len(text) < 9:
        return int(text)
    return None


async def version_page(request: Request) -> Response:
    """`/letters/{slug}/history/{number}`: a version's text and what changed since another
    (`?compare=N`, by default the version before it)."""
    slug = request.path_params["slug"]
    number = request.path_params["number"]
    snapshot = await letter_snapshot(request, slug)
    letter = snapshot.letter
    if not 1 <= number <= letter.version:
        raise HTTPException(404)
    other = _number(request.query_params.get("compare"))
    if other is None:
        other = number - 1
    if not 0 <= other <= letter.version or other == number:
        raise HTTPException(404)

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            shown = await revisions.version_text(session, letter, number)
            base = await revisions.version_text(session, letter, other) if other else None
            versions = await revisions.history(session, letter)
        if shown is None:
            raise LookupError
        comparison = None
        if base is not None:
            older, newer = (base, shown) if base.number < shown.number else (shown, base)
            comparison = revisions.compare(older, newer)
        context = {
            "letter": letter,
            "shown": shown,
            "base": base,
            "comparison": comparison,
            "versions": versions,
            "here": request.app.url_path_for("letter_version", slug=slug, number=number)
            + (f"?compare={other}" if other != number - 1 else ""),
        }
        return _page(request, "letters/version.html", context)

    try:
        key = cache.key("version", slug, i18n.current(), number, other, *version(snapshot))
        body, etag = await cached(request, key, load, [cache.letter_tag(letter.id)])
    except LookupError:
        raise HTTPException(404) from None
    return conditional(request, body, etag, "text/html; charset=utf-8", CACHING)


routes = [
    Route("/letters/{slug}/history", history, name="history"),
    Route("/letters/{slug}/history/{number:int}", version_page, name="letter_version"),
]
