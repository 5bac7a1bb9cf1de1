"""Reads that do not touch the database per reader, and HTTP caching."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from letters.app import create_app
from letters.web.cache import TTLCache
from tests.helpers import confirm_api, sign_api

PUBLIC_PATHS = [
    "/",
    "/letters/test-letter",
    "/letters/test-letter/signatures",
    "/api/letters",
    "/api/letters/test-letter",
    "/api/letters/test-letter/signatures",
]


@pytest.fixture
def cached_client(settings):
    settings.cache_seconds = 30
    with TestClient(create_app(settings)) as client:
        yield client


def count_queries(client):
    statements = []
    event.listen(
        client.app.state.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    return statements


def test_readers_reloading_do_not_reach_the_database(cached_client, letter):
    for path in PUBLIC_PATHS:
        assert cached_client.get(path).status_code == 200
    statements = count_queries(cached_client)
    for _ in range(50):
        for path in PUBLIC_PATHS:
            assert cached_client.get(path).status_code == 200
    assert statements == []


def test_unknown_letters_are_remembered_too(cached_client, letter):
    cached_client.get("/api/letters/no-such-letter")
    statements = count_queries(cached_client)
    for _ in range(20):
        assert cached_client.get("/api/letters/no-such-letter").status_code == 404
        assert cached_client.get("/letters/no-such-letter").status_code == 404
    assert statements == []


def test_a_confirmation_shows_at_once_in_its_process(cached_client, letter, mailbox):
    assert cached_client.get("/api/letters/test-letter").json()["verified_count"] == 0
    assert "No verified signatures yet" in cached_client.get("/letters/test-letter").text
    sign_api(cached_client, "a@microsoft.com", name="Ada", show_name=True)
    assert confirm_api(cached_client, mailbox.last_token()).status_code == 200
    assert cached_client.get("/api/letters/test-letter").json()["verified_count"] == 1
    assert cached_client.get("/api/letters").json()["letters"][0]["verified_count"] == 1
    assert "Ada" in cached_client.get("/letters/test-letter").text
    assert "Ada" in cached_client.get("/letters/test-letter/signatures").text


def test_other_processes_catch_up_within_the_ttl(settings, letter, mailbox):
    settings.cache_seconds = 0.3
    with TestClient(create_app(settings)) as reader, TestClient(create_app(settings)) as writer:
        assert reader.get("/api/letters/test-letter").json()["verified_count"] == 0
        sign_api(writer, "b@microsoft.com")
        confirm_api(writer, mailbox.last_token())
        import time

        time.sleep(0.35)
        assert reader.get("/api/letters/test-letter").json()["verified_count"] == 1


def test_etags_and_conditional_requests(client, letter, mailbox):
    for path in PUBLIC_PATHS:
        first = client.get(path)
        etag = first.headers["etag"]
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
    api = client.get("/api/letters/test-letter")
    assert api.headers["cache-control"] == "public, max-age=1"
    page = client.get("/en/letters/test-letter")  # the same for every reader: shared caches too
    assert page.headers["cache-control"] == "public, max-age=1"
    sign_api(client, "c@microsoft.com")
    confirm_api(client, mailbox.last_token())
    changed = client.get("/api/letters/test-letter", headers={"If-None-Match": api.headers["etag"]})
    assert changed.status_code == 200
    assert changed.json()["verified_count"] == 1


def test_the_cached_page_carries_no_readers_token_or_cookie(cached_client, letter):
    first = cached_client.get("/en/letters/test-letter")
    cached_client.cookies.clear()
    second = cached_client.get("/en/letters/test-letter")
    assert first.content == second.content
    assert "csrftoken" not in second.text
    assert "set-cookie" not in first.headers and "set-cookie" not in second.headers


def test_a_forged_host_header_never_reaches_a_cached_page(cached_client, letter):
    cached_client.get("/letters/test-letter", headers={"Host": "evil.example"})
    cached_client.get("/", headers={"Host": "evil.example"})
    for path in ["/letters/test-letter", "/"]:
        assert "evil.example" not in cached_client.get(path).text


def test_one_load_per_key_however_many_readers_wait():
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    async def main():
        cache = TTLCache(10)
        results = await asyncio.gather(*[cache.get("k", load) for _ in range(100)])
        assert results == ["value"] * 100

    asyncio.run(main())
    assert calls == 1


def test_the_cache_stays_bounded():
    async def main():
        cache = TTLCache(10, max_entries=100)
        for number in range(1000):
            await cache.get(number, lambda n=number: asyncio.sleep(0, n))
        assert len(cache._entries) <= 100

    asyncio.run(main())


def test_errors_are_remembered_only_when_asked():
    class Missing(Exception):
        pass

    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        raise Missing

    async def main():
        remembering = TTLCache(10, remember=(Missing,))
        forgetting = TTLCache(10)
        for cache in (remembering, forgetting):
            for _ in range(3):
                with pytest.raises(Missing):
                    await cache.get("k", load)

    asyncio.run(main())
    assert calls == 1 + 3
