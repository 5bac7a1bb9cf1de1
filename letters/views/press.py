"""Embeddable views of a letter's count for the press and other sites."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from letters.public import LetterNotFound
from letters.views.common import cached, conditional, etag_for, letter_snapshot

BADGE_CACHING = "public, max-age=1"
CHAR_WIDTH = 7  # average width of an 11px sans-serif character, for sizing the badge


def badge_svg(count: int) -> str:
    label = "verified signatures"
    value = f"{count:,}"
    left = len(label) * CHAR_WIDTH + 12
    right = len(value) * CHAR_WIDTH + 14
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

    async def load() -> tuple[bytes, str]:
        snapshot = await letter_snapshot(request, slug)
        body = badge_svg(snapshot.tally.verified).encode()
        return body, etag_for(body)

    try:
        body, etag = await cached(request, ("badge", slug), load)
    except LetterNotFound:
        return Response("No such letter.", status_code=404, media_type="text/plain")
    return conditional(request, body, etag, "image/svg+xml", BADGE_CACHING)
