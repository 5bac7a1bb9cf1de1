"""Single sign-on against a real (small) OpenID provider started by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from letters.app import create_app
from letters.models import Author, AuthorSession
from letters.settings import Settings
from tests.authors.helpers import SESSION_COOKIE, make_author
from tests.conftest import make_settings
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, TAMPERING, Provider, running_provider


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture
def sso_client(database_url, mailbox, tmp_path, provider) -> Iterator[TestClient]:
    settings = make_settings(
        database_url,
        smtp_url=mailbox.url,
        instance_path=tmp_path,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def to_provider_and_back(client: TestClient, provider: Provider) -> str:
    """Start a sign-in and let the provider approve it; returns the callback address."""
    start = client.get("/authors/oidc/start", follow_redirects=False)
    assert start.status_code == 302
    assert start.headers["location"].startswith(f"{provider.url}/authorize?")
    assert "nonce=" in start.headers["location"]
    approved = httpx2.get(start.headers["location"], follow_redirects=False)
    assert approved.status_code == 302
    callback = approved.headers["location"]
    assert callback.startswith("http://testserver/authors/oidc/callback?")
    return callback


def sign_on(client: TestClient, provider: Provider) -> Any:
    return client.get(to_provider_and_back(client, provider), follow_redirects=False)


def sessions(db) -> list[AuthorSession]:
    db.rollback()
    return list(db.exec(select(AuthorSession)).all())


def test_an_author_signs_in_with_their_verified_email(sso_client, provider, engine, db):
    make_author(engine, "ada@example.org")
    page = sso_client.get("/authors/sign-in")
    assert "/authors/oidc/start" in page.text
    response = sign_on(sso_client, provider)
    assert response.status_code == 303 and response.headers["location"] == "/authors"
    assert SESSION_COOKIE in response.headers["set-cookie"]
    assert sso_client.get("/authors").status_code == 200
    db.rollback()
    author = db.exec(select(Author).where(Author.email == "ada@example.org")).one()
    assert (author.oidc_issuer, author.oidc_subject) == (provider.url, "user-1")
    assert [s.method for s in sessions(db)] == ["oidc"]


def test_next_time_the_subject_is_enough(sso_client, provider, engine, db):
    make_author(engine, "ada@example.org")
    assert sign_on(sso_client, provider).status_code == 303
    sso_client.cookies.clear()
    provider.user = {**provider.user, "email": "ada.lovelace@newname.example"}
    assert sign_on(sso_client, provider).status_code == 303
    assert len(sessions(db)) == 2


def test_someone_without_an_account_is_refused(sso_client, provider, db):
    response = sign_on(sso_client, provider)
    assert response.status_code == 403 and "no author account here" in response.text
    assert sessions(db) == []


def test_an_unverified_email_is_not_trusted(sso_client, provider, engine, db):
    make_author(engine, "ada@example.org")
    provider.user = {**provider.user, "email_verified": False}
    assert sign_on(sso_client, provider).status_code == 403
    provider.user = {k: v for k, v in provider.user.items() if k != "email_verified"}
    assert sign_on(sso_client, provider).status_code == 403
    assert sessions(db) == []


# Why each tampered answer must be refused, as Authlib and joserfc name it.
REFUSALS = {
    "signature": "BadSignatureError",
    "nonce": "InvalidClaimError",  # nonce
    "audience": "MissingClaimError",  # azp: the token is for another client
    "issuer": "InvalidClaimError",  # iss
    "expired": "ExpiredTokenError",
    "no_id_token": None,
}


@pytest.mark.parametrize("tamper", TAMPERING)
def test_tampered_answers_are_refused(sso_client, provider, engine, db, tamper, caplog):
    """A bad signature, a wrong nonce, another audience or issuer, an expired token."""
    make_author(engine, "ada@example.org")
    provider.tamper = tamper
    with caplog.at_level("WARNING", logger="letters.web.oidc"):
        response = sign_on(sso_client, provider)
    if REFUSALS[tamper]:
        assert caplog.messages == [f"single sign-on refused: {REFUSALS[tamper]}"]
    assert response.status_code in (400, 403), tamper
    assert "could not be verified" in response.text or "did not say who you are" in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert sessions(db) == []
    assert provider.token_requests == 1  # the token was fetched and then refused


def test_a_callback_works_once_and_only_in_the_browser_that_started(
    sso_client, provider, engine, db
):
    make_author(engine, "ada@example.org")
    callback = to_provider_and_back(sso_client, provider)
    # Another browser (an attacker handing their callback to a victim) has no state cookie.
    with TestClient(sso_client.app) as other:
        refused = other.get(callback, follow_redirects=False)
    assert refused.status_code == 400
    assert sso_client.get(callback, follow_redirects=False).status_code == 303
    sso_client.cookies.delete(SESSION_COOKIE)
    replay = sso_client.get(callback, follow_redirects=False)
    assert replay.status_code == 400
    assert len(sessions(db)) == 1


def test_a_forged_state_or_code_is_refused(sso_client, provider, engine, db):
    make_author(engine, "ada@example.org")
    callback = to_provider_and_back(sso_client, provider)
    path, _, _query = callback.partition("?")
    for query in ["code=x&state=y", "state=y", "code=x", "", "error=access_denied"]:
        assert sso_client.get(f"{path}?{query}", follow_redirects=False).status_code == 400
    assert sessions(db) == []


def test_an_unreachable_provider_is_a_clear_error(database_url, mailbox, tmp_path):
    from tests.conftest import free_port

    settings = make_settings(
        database_url,
        smtp_url=mailbox.url,
        instance_path=tmp_path,
        oidc_issuer=f"http://127.0.0.1:{free_port()}",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/authors/oidc/start", follow_redirects=False)
        assert response.status_code == 503 and "not available" in response.text


def test_without_settings_there_is_no_single_sign_on(client):
    assert client.get("/authors/oidc/start").status_code == 404
    assert client.get("/authors/oidc/callback?code=x&state=y").status_code == 404
    assert "/authors/oidc/start" not in client.get("/authors/sign-in").text


def test_the_three_settings_go_together():
    for partial in [
        {"oidc_issuer": "https://id.example"},
        {"oidc_client_id": "x", "oidc_client_secret": "y"},
        {"oidc_issuer": "id.example", "oidc_client_id": "x", "oidc_client_secret": "y"},
    ]:
        with pytest.raises(ValueError):
            Settings(_env_file=None, environment="test", secret_key="k" * 40, **partial)
    with pytest.raises(ValueError):
        Settings(
            _env_file=None,
            environment="production",
            secret_key="k" * 40,
            smtp_url="smtp://mail.example:25",
            oidc_issuer="http://id.example",
            oidc_client_id="x",
            oidc_client_secret="y",
        )
