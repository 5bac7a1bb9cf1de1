"""Embeddable views of a letter's count for the press and other sites."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from letters import i18n
from letters.chart import chart_svg, cumulative
from letters.models import utcnow
from letters.record.public import (
    LetterNotFound,
    LetterSnapshot,
    daily_counts,
    named_signatures,
)
from letters.spreadsheet import to_csv
from letters.web import cache
from letters.web.api import iso_day, public_letter
from letters.web.common import (
    HTML,
    cached_letter_answer,
    db_session,
    etag_for,
    letter_snapshot,
    settings_of,
)
from letters.web.security import CONTENT_SECURITY_POLICY

CSV_BATCH = 1000

BADGE_CACHING = "public, max-age=1"
CHAR_WIDTH = 7  # average width of an 11px sans-serif character, for sizing the badge


BADGE_LABEL = "verified signatures"
BADGE_HEIGHT = 20


def _badge_parts(count: int) -> tuple[str, int, int]:
    value = f"{count:,}"
    return value, len(BADGE_LABEL) * CHAR_WIDTH + 12, len(value) * CHAR_WIDTH + 14


def badge_width(count: int) -> int:
    """The badge's width for `count`, for the page that shows it (an image with a size)."""
    _, left, right = _badge_parts(count)
    return left + right


def badge_svg(count: int) -> str:
    """The same image in every language, like the JSON: it is embedded on other sites."""
    label = BADGE_LABEL
    value, left, right = _badge_parts(count)
    width = left + right
    text = f"{value} {label}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" '
        f'role="img" aria-label="{text}">'
        f"<title>{text}</title>"
        f'<rect width="{left}" height="20" fill="#3b4149"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="#1d6b3a"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="6" y="14">{label}</text>'
        f'<text x="{left + 7}" y="14">{value}</text>'
        "</g></svg>"
    )


async def badge(request: Request) -> Response:
    """`/letters/{slug}/badge.svg`: the live verified count as a small image."""
    slug = request.path_params["slug"]
    try:
        snapshot = await letter_snapshot(request, slug)
    except LetterNotFound:
        return Response("No such letter.", status_code=404, media_type="text/plain")

    async def load() -> tuple[bytes, str]:
        body = badge_svg(snapshot.tally.verified).encode()
        return body, etag_for(body)

    key = cache.key("badge", slug)
    return await cached_letter_answer(request, snapshot, key, load, "image/svg+xml", BADGE_CACHING)


def _per_day(rows: list[tuple[str, str, int]]) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for day, _, count in rows:
        totals[day] = totals.get(day, 0) + count
    return sorted(totals.items())


async def tally_page(request: Request) -> Response:
    """`/letters/{slug}/tally`: the count for the press, with its history and how it is made."""
    slug = request.path_params["slug"]
    snapshot = await letter_snapshot(request, slug)

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            rows = await daily_counts(session, snapshot.letter)
        per_day = _per_day(rows)
        context = {
            "letter": snapshot.letter,
            "tally": snapshot.tally,
            "domains": snapshot.domains,
            "as_of": utcnow(),
            "badge_width": badge_width(snapshot.tally.verified),
            "chart": chart_svg(
                per_day,
                i18n.gettext(
                    "Verified signatures over time: %(title)s", title=snapshot.letter.title
                ),
                # Flat up to today, or to the day the letter closed.
                until=(snapshot.letter.closed_at or utcnow()).date(),
            ),
            "days": list(zip(per_day, cumulative(per_day), strict=True)),
            "deliveries": snapshot.deliveries,
            "follow_ups": snapshot.follow_ups,
            "site_url": settings_of(request).base_url,
            "here": request.app.url_path_for("tally", slug=slug),
        }
        return _rendered(request, "letters/tally.html", context)

    key = cache.key("tally", slug, i18n.current())
    return await cached_letter_answer(request, snapshot, key, load, HTML, "private, no-cache")


def _rendered(request: Request, template: str, context: dict[str, object]) -> tuple[bytes, str]:
    """A page rendered for the cache, with its ETag."""
    body = request.app.state.templates.get_template(template).render(context).encode()
    return body, etag_for(body)


def _attachment(name: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "public, max-age=5",
    }


@public_letter
async def signatures_csv(request: Request, snapshot: LetterSnapshot) -> Response:
    """Every verified signature whose signer chose to show their name, oldest first."""
    slug, letter = request.path_params["slug"], snapshot.letter

    async def rows() -> AsyncIterator[str]:
        yield to_csv([["name", "title", "organization", "signed_at"]])
        after = None
        while True:
            async with db_session(request) as session:
                page, after = await named_signatures(session, letter, after, CSV_BATCH)
            yield to_csv(
                [[row.name, row.title, row.organization, iso_day(row.verified_at)] for row in page]
            )
            if after is None:
                return

    return StreamingResponse(
        rows(), media_type="text/csv; charset=utf-8", headers=_attachment(f"{slug}-signatures.csv")
    )


@public_letter
async def daily_csv(request: Request, snapshot: LetterSnapshot) -> Response:
    """Verified signatures per UTC day and organization."""
    slug, letter = request.path_params["slug"], snapshot.letter
    async with db_session(request) as session:
        rows = await daily_counts(session, letter)
    body = to_csv([["day", "organization", "verified"], *[list(row) for row in rows]])
    return Response(
        body, media_type="text/csv; charset=utf-8", headers=_attachment(f"{slug}-daily.csv")
    )


# Only this page may be framed by other sites: it shows nothing but public figures and
# takes no input, so clickjacking gains nothing.
WIDGET_POLICY = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors *")


async def widget(request: Request) -> Response:
    """`/letters/{slug}/widget`: the live count for an iframe on a news site."""
    slug = request.path_params["slug"]
    snapshot = await letter_snapshot(request, slug)

    async def load() -> tuple[bytes, str]:
        context = {
            "letter": snapshot.letter,
            "tally": snapshot.tally,
            "site_url": settings_of(request).base_url,
        }
        return _rendered(request, "letters/widget.html", context)

    key = cache.key("widget", slug, i18n.current())
    headers = {"Content-Security-Policy": WIDGET_POLICY}
    return await cached_letter_answer(
        request, snapshot, key, load, HTML, "public, max-age=1", headers
    )


routes = [
    Route("/letters/{slug}/badge.svg", badge, name="badge"),
    Route("/letters/{slug}/tally", tally_page, name="tally"),
    Route("/letters/{slug}/widget", widget, name="widget"),
    Route("/api/letters/{slug}/signatures.csv", signatures_csv, name="signatures_csv"),
    Route("/api/letters/{slug}/daily.csv", daily_csv, name="daily_csv"),
]
