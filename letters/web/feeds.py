"""Atom feeds, to follow a letter without giving anyone an address: one per letter at
`/letters/{slug}/feed.atom` and one for the site at `/feed.atom`.

Entries are the letter's events (letters.record.timeline): publication, new versions with
their notes, milestones of the count, deliveries, replies and outcomes, closing. Written
with feedgenerator's Atom writer; each entry's id is the address of its place on the
letter's history page, which never changes. Feeds are in the reader's language, carry an
ETag and may be kept by any cache for a minute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from feedgenerator import Atom1Feed
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letters import i18n
from letters.i18n import format_number, gettext, ngettext
from letters.models import Letter
from letters.record.timeline import Event, letter_events, site_events
from letters.web import cache
from letters.web.common import (
    cached,
    conditional,
    db_session,
    etag_for,
    render_text,
    settings_of,
    snapshot_or_404,
    tag_answer,
    version,
)
from letters.web.language import VARY

MEDIA_TYPE = "application/atom+xml; charset=utf-8"
CACHING = "public, max-age=60"
SITE_ENTRIES = 50


def event_title(event: Event) -> str:
    """What happened, in a line: the entry's title in a feed, a heading on the history page."""
    kind, number = event.kind, format_number(event.number)
    if kind == "published":
        return gettext("Published")
    if kind == "revised":
        return gettext("Version %(number)s published", number=event.number)
    if kind == "milestone":
        return gettext("%(number)s verified signatures", number=number)
    if kind == "goal":
        return gettext("Goal reached: %(number)s verified signatures", number=number)
    if kind == "delivered" and event.delivery is not None:
        return ngettext(
            "Delivered to %(recipient)s on %(date)s with %(number)s verified signature",
            "Delivered to %(recipient)s on %(date)s with %(number)s verified signatures",
            event.delivery.verified_count,
            recipient=event.delivery.recipient,
            date=i18n.long_date(date.fromisoformat(event.delivery.delivered_on)),
            number=number,
        )
    if kind == "reply" and event.follow_up is not None:
        if event.follow_up.source:
            return gettext("Reply from %(source)s", source=event.follow_up.source)
        return gettext("The recipient replied")
    if kind == "outcome":
        return gettext("Outcome")
    return gettext("Closed: it no longer takes signatures")


class Feed(Atom1Feed):  # type: ignore[misc]
    """Atom, whose `updated` is its newest entry's (or the given moment), never "now":
    the same events make the same bytes, and so the same ETag."""

    def latest_post_date(self) -> datetime:
        latest: datetime = self.feed["updated"]
        for item in self.items:
            latest = max(latest, item["updateddate"])
        return latest


def _add(request: Request, feed: Feed, letter: Letter, event: Event, title: str, base: str) -> None:
    place = f"{base}{request.app.url_path_for('history', slug=letter.slug)}#{event.anchor}"
    body = render_text(request, "letters/_event_body.html", {"letter": letter, "event": event})
    feed.add_item(
        title=title,
        link=place,
        description=body,
        unique_id=place,
        pubdate=event.at,
        updateddate=event.at,
    )


async def letter_feed(request: Request) -> Response:
    """`/letters/{slug}/feed.atom`: the letter's events, newest first."""
    slug = request.path_params["slug"]
    snapshot = await snapshot_or_404(request, slug)
    letter = snapshot.letter

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            events = await letter_events(session, letter, snapshot.deliveries, snapshot.follow_ups)
        base = settings_of(request).base_url
        url = f"{base}{request.app.url_path_for('letter', slug=slug)}"
        feed = Feed(
            title=letter.title,
            link=url,
            description=gettext("What happens to this open letter, as it happens."),
            language=i18n.current(),
            feed_url=f"{base}{request.app.url_path_for('letter_feed', slug=slug)}",
            feed_guid=url,
            author_name=gettext("The authors of “%(title)s”", title=letter.title),
            updated=letter.published_at or letter.created_at,
        )
        for event in events:
            _add(request, feed, letter, event, event_title(event), base)
        body = feed.writeString("utf-8").encode()
        return body, etag_for(body)

    key = cache.key("feed", slug, i18n.current(), *version(snapshot))
    body, etag = await cached(request, key, load, [cache.letter_tag(letter.id)])
    return conditional(request, body, etag, MEDIA_TYPE, CACHING, {"Vary": VARY})


async def site_feed(request: Request) -> Response:
    """`/feed.atom`: the newest events of every public letter."""

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            events = await site_events(session, SITE_ENTRIES)
        base = settings_of(request).base_url
        feed = Feed(
            title=gettext("Letters"),
            link=f"{base}/",
            description=gettext("Open letters signed by verified employees"),
            language=i18n.current(),
            feed_url=f"{base}{request.app.url_path_for('site_feed')}",
            feed_guid=f"{base}/",
            author_name=gettext("Letters"),
            updated=_epoch(events),
        )
        for letter, event in events:
            title = f"{letter.title}: {event_title(event)}"
            _add(request, feed, letter, event, title, base)
        body = feed.writeString("utf-8").encode()
        return body, etag_for(body)

    tag_answer(request, cache.LISTS)
    body, etag = await cached(request, cache.key("site-feed", i18n.current()), load, [cache.LISTS])
    return conditional(request, body, etag, MEDIA_TYPE, CACHING, {"Vary": VARY})


def _epoch(events: list[tuple[Letter, Event]]) -> datetime:
    """A fixed `updated` for a site without events (so its feed's bytes do not change)."""
    if events:
        return events[-1][1].at
    return datetime(2026, 1, 1, tzinfo=UTC)


routes = [
    Route("/feed.atom", site_feed, name="site_feed"),
    Route("/letters/{slug}/feed.atom", letter_feed, name="letter_feed"),
]
