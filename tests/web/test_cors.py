"""Other sites may read the public data, and nothing else."""

from __future__ import annotations

from tests.helpers import counts

ORIGIN = {"Origin": "https://news.example"}


def test_public_data_is_readable_from_other_sites(client, letter):
    for path in [
        "/api/letters",
        "/api/letters/test-letter",
        "/api/letters/test-letter/signatures",
        "/letters/test-letter/badge.svg",
    ]:
        response = client.get(path, headers=ORIGIN)
        assert response.headers["access-control-allow-origin"] == "*", path
        assert "ETag" in response.headers["access-control-expose-headers"]
        assert "access-control-allow-credentials" not in response.headers


def test_pages_and_writes_are_not_shared(client, letter, mailbox, db):
    assert (
        "access-control-allow-origin"
        not in client.get("/letters/test-letter", headers=ORIGIN).headers
    )
    response = client.post(
        "/api/letters/test-letter/signatures",
        json={"email": "x@microsoft.com"},
        headers=ORIGIN,
    )
    assert "access-control-allow-origin" not in response.headers


def test_preflight_allows_conditional_gets_and_refuses_posts(client, letter, db):
    ok = client.options(
        "/api/letters/test-letter",
        headers={
            **ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "If-None-Match",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-methods"] == "GET, HEAD"
    assert "If-None-Match" in ok.headers["access-control-allow-headers"]
    refused = client.options(
        "/api/letters/test-letter/signatures",
        headers={
            **ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert counts(db)["verified"] == 0
