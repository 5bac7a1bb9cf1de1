"""Atom feeds: follow a letter (or the site) without giving an address."""

from __future__ import annotations

import feedparser
from sqlmodel import select

from letters.models import Letter, Milestone, utcnow
from tests.authors.helpers import create_draft, post_form, publish, sign, sign_in_as
from tests.conftest import make_letter

SLUG = "drop-the-contract"
FEED = f"/letters/{SLUG}/feed.atom"


def parsed(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


def test_a_letter_feed_lists_its_events_and_is_valid_atom(client, engine, mailbox, db):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    assert client.get(FEED).status_code == 404  # drafts have no feed
    publish(client, SLUG)
    revision = {
        "title": "Drop the contract",
        "body": "We ask to **drop it now**.",
        "note": "Clearer ask",
        "base": "1",
    }
    assert (
        post_form(
            client,
            f"/authors/letters/{SLUG}/revise",
            revision,
            page=f"/authors/letters/{SLUG}/revise",
        ).status_code
        == 303
    )
    sign(client, mailbox, "grace@github.com", SLUG, name="Grace Hopper", show_name=True)
    sign(client, mailbox, "secret@microsoft.com", SLUG, name="Secret Person")
    letter = db.exec(select(Letter).where(Letter.slug == SLUG)).one()
    db.add(Milestone(letter_id=letter.id, threshold=100, reached_at=utcnow()))
    db.commit()
    today = utcnow().date().isoformat()
    page = f"/authors/letters/{SLUG}/delivery"
    delivered = {"recipient": "The board", "method": "other", "delivered_on": today}
    assert post_form(client, page, delivered, page=page).status_code == 303
    reply = {"kind": "reply", "happened_on": today, "source": "The CEO", "text": "No."}
    assert (
        post_form(client, f"/authors/letters/{SLUG}/follow-up", reply, page=page).status_code == 303
    )
    assert post_form(client, f"/authors/letters/{SLUG}/close").status_code == 303

    response = client.get(FEED)
    feed = parsed(response)
    assert feed.version == "atom10"
    assert feed.feed.title == "Drop the contract"
    assert feed.feed.id == f"http://testserver/letters/{SLUG}"
    self_links = [link.href for link in feed.feed.links if link.rel == "self"]
    assert self_links == [f"http://testserver{FEED}"]
    assert feed.feed.author
    titles = [entry.title for entry in feed.entries]
    assert titles[0] == "Closed: it no longer takes signatures"
    for expected in (
        "Reply from The CEO",
        "Published",
        "Version 2 published",
        "100 verified signatures",
    ):
        assert expected in titles
    assert any(
        t.startswith("Delivered to The board on ") and t.endswith("with 2 verified signatures")
        for t in titles
    )
    ids = [entry.id for entry in feed.entries]
    assert len(set(ids)) == len(ids)
    assert all(
        entry.id.startswith(f"http://testserver/letters/{SLUG}/history#") for entry in feed.entries
    )
    assert all(entry.updated for entry in feed.entries)
    revised = next(e for e in feed.entries if e.title == "Version 2 published")
    assert "Clearer ask" in revised.summary
    assert "Secret Person" not in response.text

    # Cache-friendly: an ETag, a short public lifetime, and 304 when nothing changed.
    assert response.headers["cache-control"] == "public, max-age=60"
    assert "Accept-Language" in response.headers["vary"]
    again = client.get(FEED, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    # A new signature changes no event: the same bytes, the same ETag.
    assert client.get(FEED).headers["etag"] == response.headers["etag"]

    # In Spanish, with the reader's language.
    spanish = parsed(client.get(FEED, headers={"Accept-Language": "es"}))
    assert spanish.feed.language == "es"
    assert "Publicada" in [entry.title for entry in spanish.entries]


def test_the_site_feed_lists_every_public_letter_and_no_draft(client, engine, letter):
    make_letter(engine, "a-draft", status="draft")
    make_letter(engine, "another-one")
    feed = parsed(client.get("/feed.atom"))
    assert feed.feed.id == "http://testserver/"
    titles = [entry.title for entry in feed.entries]
    assert "Test letter: Published" in titles
    assert all("a-draft" not in entry.id for entry in feed.entries)
    assert {e.id.split("/letters/")[1].split("/")[0] for e in feed.entries} == {
        "test-letter",
        "another-one",
    }


def test_pages_link_to_the_feeds_and_the_confirmation_offers_it(client, letter, mailbox):
    page = client.get("/letters/test-letter").text
    assert (
        '<link rel="alternate" type="application/atom+xml" href="/letters/test-letter/feed.atom"'
        in page
    )
    assert '<link rel="alternate" type="application/atom+xml" href="/feed.atom"' in page
    assert 'href="/letters/test-letter/feed.atom"' in client.get("/letters/test-letter/tally").text
    from tests.helpers import csrf_from, sign_api

    assert sign_api(client, "a@microsoft.com").status_code == 202
    token = mailbox.last_token()
    form = client.get(f"/verify/{token}").text
    done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(form)})
    assert done.status_code == 200
    assert "nobody asks for your address" in done.text
    assert 'href="/letters/test-letter/feed.atom"' in done.text
    assert 'href="/letters/test-letter/flyer"' in done.text


def test_an_unknown_letter_has_no_feed(client):
    assert client.get("/letters/no-such-letter/feed.atom").status_code == 404
    assert client.get("/letters/NOT%20A%20SLUG/feed.atom").status_code == 404
