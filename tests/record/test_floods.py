"""A flood of sign requests for one company's domain cannot keep its employees from
signing, and the company's mail server does not receive the flood."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from letters.app import create_app
from letters.record.floods import FLOODED_PER_IP
from tests.authors.helpers import queued
from tests.conftest import make_settings
from tests.helpers import confirm_api


def from_addresses(app: Any) -> Any:
    """The app, with each request coming from the IP address in its X-Test-Client header."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            ip = headers.get(b"x-test-client", b"192.0.2.1").decode()
            scope = {**scope, "client": (ip, 40000)}
        await app(scope, receive, send)

    return wrapped


def sign(client: TestClient, email: str, ip: str) -> int:
    response = client.post(
        "/api/letters/test-letter/signatures",
        json={"email": email},
        headers={"x-test-client": ip},
    )
    return response.status_code


def queued_to(db: Any, domain: str) -> int:
    """The emails waiting for the domain's mail server (the outbox keeps them sealed)."""
    return sum(message.to.endswith("@" + domain) for message in queued(db))


def test_a_flood_from_fifty_addresses_does_not_stop_a_real_signer(
    database_url, tmp_path, letter, db, mailbox
):
    per_domain = 20
    settings = make_settings(
        database_url,
        instance_path=tmp_path,
        smtp_url=mailbox.url,
        limit_per_domain=per_domain,
        mail_in_app=False,  # the queue shows what the company's mail server would receive
    )
    attackers = [f"198.51.100.{n}" for n in range(1, 51)]
    per_attacker = 12
    with TestClient(from_addresses(create_app(settings))) as client:
        answers = [
            sign(client, f"made.up.{ip}.{n}@corp.example", ip)
            for n in range(per_attacker)
            for ip in attackers
        ]
        assert set(answers) <= {202, 429}
        # Until the domain counted as flooded, requests went through; then each address
        # got only a few more links to the domain.
        accepted = answers.count(202)
        most = per_domain + len(attackers) * FLOODED_PER_IP
        assert accepted <= most < len(answers) / 2
        assert queued_to(db, "corp.example") == accepted

        # A real employee, from their own address, still gets their link...
        assert sign(client, "real.person@corp.example", "203.0.113.7") == 202
        # ...and other companies were never affected.
        assert sign(client, "someone@github.com", "198.51.100.1") == 202


def test_a_busy_day_with_confirmed_signatures_is_not_a_flood(
    database_url, tmp_path, letter, mailbox
):
    per_domain = 5
    settings = make_settings(
        database_url, instance_path=tmp_path, smtp_url=mailbox.url, limit_per_domain=per_domain
    )
    office = "192.0.2.10"  # a whole office behind one address
    with TestClient(from_addresses(create_app(settings))) as client:
        for n in range(per_domain + 3 * FLOODED_PER_IP + 5):
            email = f"employee.{n}@corp.example"
            assert sign(client, email, office) == 202, n
            mailbox.wait_for(n + 1)
            assert confirm_api(client, mailbox.last_token(email)).status_code == 200
