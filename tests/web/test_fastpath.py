"""The fast path replays cached answers before routing: same bytes, same headers, for every
reader, and dropped as soon as this process confirms a signature."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from letters import i18n
from letters.app import create_app, make_routes
from letters.web import fastpath
from letters.web.routing import RouteIndex
from tests.helpers import confirm_api, sign_api

REPLAYED = [
    "/",
    "/en/letters/test-letter",
    "/es/letters/test-letter",
    "/api/letters",
    "/api/letters/test-letter",
    "/letters/test-letter/badge.svg",
    "/letters/test-letter/widget",
    "/letters/test-letter/tally",
]


FAST_ROUTES = RouteIndex(make_routes(), fastpath.ROUTES)


def fast_key(path: str, language: str | None = None) -> object:
    """The key of `path` for a reader of `language` (by default, the one its address says)."""
    if language is None:
        first = path.split("/", 2)[1]
        language = first if first in i18n.LANGUAGES else i18n.DEFAULT
    return fastpath.fast_key(FAST_ROUTES, path, language)


def keep_only_fast_answers(app) -> None:
    entries = app.state.cache._entries
    for key in [key for key in entries if "fast" not in key[0]]:
        del entries[key]


@pytest.fixture
def cached_app(settings):
    settings.cache_seconds = 30
    return create_app(settings)


def replayed(app) -> set[object]:
    return {key for key in app.state.cache._entries if isinstance(key, tuple) and "fast" in key[0]}


@pytest.mark.parametrize("path", REPLAYED)
def test_a_replayed_answer_is_the_answer_the_app_gave(cached_app, letter, path):
    with TestClient(cached_app) as client:
        first = client.get(path)
        assert first.status_code == 200
        assert fast_key(path) in replayed(cached_app)
        second = client.get(path)
    assert second.content == first.content
    assert second.headers == first.headers  # security headers, ETag, caching, length
    conditional = TestClient(cached_app).get(path, headers={"If-None-Match": first.headers["etag"]})
    assert conditional.status_code == 304
    assert conditional.content == b""
    assert conditional.headers["etag"] == first.headers["etag"]
    assert "content-security-policy" in conditional.headers


def test_every_reader_of_the_letter_page_gets_the_same_answer(cached_app, letter, mailbox):
    path = "/en/letters/test-letter"
    with TestClient(cached_app) as warm:
        assert warm.get(path).status_code == 200
        assert fast_key(path) in replayed(cached_app)
    with TestClient(cached_app) as first, TestClient(cached_app) as second:
        second.cookies.set("csrftoken", "a-returning-readers-cookie-0123")
        page_one, page_two = first.get(path), second.get(path)
        assert page_one.content == page_two.content
        assert page_one.headers == page_two.headers
        assert "set-cookie" not in page_one.headers
        assert "csrftoken" not in page_one.text
        not_modified = first.get(path, headers={"If-None-Match": page_one.headers["etag"]})
        assert not_modified.status_code == 304
        assert "content-length" not in not_modified.headers
        # The form of the replayed page posts from a browser that says it is ours.
        response = first.post(
            "/letters/test-letter/sign",
            data={"email": "fast@github.com", "show_name": "0"},
            headers={"Sec-Fetch-Site": "same-origin"},
            follow_redirects=False,
        )
        assert response.status_code == 303


def test_a_confirmation_in_this_process_shows_at_once(cached_app, letter, mailbox):
    with TestClient(cached_app) as client:
        assert client.get("/api/letters/test-letter").json()["verified_count"] == 0
        assert "0 verified" in client.get("/letters/test-letter/badge.svg").text
        sign_api(client, "now@github.com")
        confirm_api(client, mailbox.last_token())
        assert client.get("/api/letters/test-letter").json()["verified_count"] == 1
        assert "1 verified" in client.get("/letters/test-letter/badge.svg").text
        assert client.get("/api/letters").json()["letters"][0]["verified_count"] == 1


def test_what_the_fast_path_leaves_alone(cached_app, letter):
    with TestClient(cached_app) as client:
        for path in ("/api/letters/nope", "/letters/nope", "/letters/test-letter/signatures"):
            client.get(path)
        client.get("/api/letters/test-letter?x=1")
        client.head("/api/letters/test-letter")
        cross_site = client.get("/api/letters/test-letter", headers={"Origin": "https://news"})
        assert cross_site.headers["access-control-allow-origin"] == "*"
        assert replayed(cached_app) == set()
        client.get("/api/letters/test-letter")
        again = client.get("/api/letters/test-letter", headers={"Origin": "https://news"})
        assert again.headers["access-control-allow-origin"] == "*"  # CORS still answered


def test_no_replay_when_caching_is_off(settings, letter):
    settings.cache_seconds = 0
    app = create_app(settings)
    with TestClient(app) as client:
        client.get("/api/letters/test-letter")
        client.get("/api/letters/test-letter")
    assert replayed(app) == set()


def test_readers_of_each_language_get_their_own_page_from_the_fast_path(cached_app, letter):
    en, es = "/en/letters/test-letter", "/es/letters/test-letter"
    with TestClient(cached_app) as english, TestClient(cached_app) as spanish:
        spanish.headers["Accept-Language"] = "es-ES,es;q=0.9"
        assert "Sign this letter" in english.get("/letters/test-letter").text
        assert "Firmar esta carta" in spanish.get("/letters/test-letter").text
        assert fast_key(en) != fast_key(es, "es")
        assert {fast_key(en), fast_key(es, "es")} <= replayed(cached_app)
        # Only the fast path's copies are left: a request reaching the view would query.
        keep_only_fast_answers(cached_app)
        statements: list[str] = []
        event.listen(
            cached_app.state.engine.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        for _ in range(3):
            page = english.get(en)
            assert '<html lang="en">' in page.text and "Sign this letter" in page.text
            assert page.headers["content-language"] == "en"
            page = spanish.get(es)
            assert '<html lang="es">' in page.text and "Firmar esta carta" in page.text
            assert "Sign this letter" not in page.text
            assert page.headers["content-language"] == "es"
            assert (
                page.headers.get("vary", "Accept-Encoding") == "Accept-Encoding"
            )  # not the language
            # The address wins over the reader's language: links stay what they say.
            assert "Sign this letter" in spanish.get(en).text
        assert statements == []


def test_the_fast_path_compresses_an_answer_once_and_sends_each_reader_what_it_accepts(
    cached_app, letter
):
    path = "/en/letters/test-letter"
    with TestClient(cached_app) as client:
        first = client.get(path)  # compressed by the app's layer, then kept plainly
        answer = cached_app.state.cache.peek(fast_key(path))
        assert answer is not None and answer.gzip_headers is not None
        packed = client.get(path)
        plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert first.headers["content-encoding"] == packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content == first.content  # httpx decodes gzip
    assert int(packed.headers["content-length"]) == len(answer.gzip_body) < len(answer.body)
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(answer.body)
    assert (
        "Accept-Encoding" in packed.headers["vary"] and "Accept-Encoding" in plain.headers["vary"]
    )


def test_an_answer_the_fast_path_does_not_keep_is_still_compressed(cached_app, letter):
    """A reader's first request, or an address that has no letter, passes through the fast
    path as the app made it: compressed for a reader who accepts gzip."""
    gzip = {"Accept-Encoding": "gzip"}
    with TestClient(cached_app) as client:
        missing = client.get("/en/letters/no-such-letter", headers=gzip)
        first = client.get("/en/letters/test-letter", headers=gzip)
    assert missing.status_code == 404 and len(missing.content) >= 500
    assert missing.headers["content-encoding"] == "gzip"
    assert first.headers["content-encoding"] == "gzip"
    answer = cached_app.state.cache.peek(fast_key("/en/letters/test-letter"))
    assert answer is not None and answer.body == first.content  # kept plain
