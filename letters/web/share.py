"""Spreading a letter offline: a QR code of its address, and a flyer to print.

The QR code (`/letters/{slug}/qr.svg`) is made with segno and holds the letter's address
exactly, with nothing added that could tell who scanned it. The flyer
(`/letters/{slug}/flyer`) fits one A4 or Letter page: the title, an excerpt, the count
when printed, the code, the address, and one line on privacy.
"""

from __future__ import annotations

import io

import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letters import i18n
from letters.i18n import gettext
from letters.models import utcnow
from letters.record.public import LetterNotFound
from letters.web import cache
from letters.web.common import (
    HTML,
    cached,
    conditional,
    etag_for,
    letter_snapshot,
    render_text,
    settings_of,
    snapshot_or_404,
    version,
)

QR_CACHING = "public, max-age=86400"  # a letter's address never changes
EXCERPT = 400


def letter_url(request: Request, slug: str) -> str:
    return f"{settings_of(request).base_url}{request.app.url_path_for('letter', slug=slug)}"


def qr_svg(url: str, title: str, inline: bool = False) -> str:
    """The QR code of `url` as SVG: dark on white, with the quiet zone scanners need.

    `inline`: for a page, scaled by its container (a viewBox, no size, no XML declaration).
    """
    code = segno.make(url, error="m", micro=False)
    if inline:
        return str(code.svg_inline(scale=8, border=4, omitsize=True, title=title, light="#fff"))
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", scale=8, border=4, title=title, dark="#000", light="#fff")
    return buffer.getvalue().decode()


async def qr(request: Request) -> Response:
    """`/letters/{slug}/qr.svg`: the letter's address as a QR code (the same in any language)."""
    slug = request.path_params["slug"]
    try:
        await letter_snapshot(request, slug)
    except LetterNotFound:
        return Response("No such letter.", status_code=404, media_type="text/plain")
    url = letter_url(request, slug)
    body = qr_svg(url, url).encode()
    return conditional(request, body, etag_for(body), "image/svg+xml", QR_CACHING)


async def flyer(request: Request) -> Response:
    """`/letters/{slug}/flyer`: a page to print and pin up."""
    slug = request.path_params["slug"]
    snapshot = await snapshot_or_404(request, slug)

    today = utcnow().date()

    async def load() -> tuple[bytes, str]:
        url = letter_url(request, slug)
        label = gettext("QR code of the letter's address, %(url)s", url=url)
        context = {
            "letter": snapshot.letter,
            "tally": snapshot.tally,
            "url": url,
            "qr": qr_svg(url, label, inline=True),
            "qr_label": label,
            "as_of": today,
            "excerpt_length": EXCERPT,
            "here": request.app.url_path_for("flyer", slug=slug),
        }
        body = render_text(request, "letters/flyer.html", context).encode()
        return body, etag_for(body)

    key = cache.key("flyer", slug, i18n.current(), today, *version(snapshot))
    body, etag = await cached(request, key, load, [cache.letter_tag(snapshot.letter.id)])
    return conditional(request, body, etag, HTML, "private, no-cache")


routes = [
    Route("/letters/{slug}/qr.svg", qr, name="qr"),
    Route("/letters/{slug}/flyer", flyer, name="flyer"),
]
