"""Every email leaves dated, with a Message-ID on the sender's domain, marked as automatic
(deliveries aside), and DKIM-signed when a key is set: checked by independent tools."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from letters import i18n
from letters.mail import compose
from letters.mail.backend import Attachment, Message, make_backend, wire
from letters.settings import DKIMConfig
from tests.conftest import make_settings
from tests.dns_server import serving

HERE = Path(__file__).parent
IN_CI = os.environ.get("CI") == "true"


def need(tool: str, found: bool) -> None:
    """Skip without `tool` on a workstation; in CI (which installs it) fail instead."""
    if not found:
        if IN_CI:
            pytest.fail(f"{tool} is missing: .ci/run installs it")
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")


def has_mail_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e", "1"], capture_output=True)
    return probe.returncode == 0


def rsa_pem(bits: int = 2048) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def every_kind(settings) -> list[Message]:
    """One of each email the site writes: signing, manage, every one to authors (sign-in,
    milestone, co-author invitation, the mail alert), and a delivery."""
    env = compose.environment()
    names = sorted(p.removesuffix(".txt") for p in env.list_templates(extensions=["txt"]))
    context = {
        "link": f"{settings.base_url}/verify/TOKEN",
        "hours": 24,
        "site": settings.base_url,
        "title": "Drop the contract",
        "count": 100,
        "goal": None,
        "reached_goal": False,
        "letter_url": f"{settings.base_url}/letters/drop",
        "manage_url": f"{settings.base_url}/authors/letters/drop",
        "minutes": 60,
        "letter": {"title": "Drop the contract"},
        "inviter": "owner@example.org",
        "sign_in": f"{settings.base_url}/authors/sign-in",
        "failures": 20,
        "since": "13:00",
        "codes": ["550 5.7.1"],
        "admin_url": f"{settings.base_url}/authors/admin",
    }
    messages = [
        compose.signing_email(settings)("signer@microsoft.com", "TOKEN"),
        compose.manage_email(settings)("signer@microsoft.com", "TOKEN"),
    ]
    for name in names:
        if name.startswith("authors/"):
            messages.append(compose.render(name, "author@example.org", context))
    messages.append(
        compose.delivery_email(
            "ceo@microsoft.com",
            "Employees of Microsoft",
            "authors@example.org",
            {
                **context,
                "body": "We ask for better things.",
                "verified": 120,
                "as_of": "2026-11-30",
                "organizations": [("Microsoft", 120)],
                "names": [],
                "named": 0,
                "more_names": 0,
                "hidden": 120,
                "ledger_url": f"{settings.base_url}/api/letters/drop/ledger",
                "reply_to": "authors@example.org",
            },
            (Attachment("names.csv", "text/csv", "name\n"),),
        )
    )
    return messages


def parsed(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def test_every_email_is_dated_when_it_leaves_with_its_own_message_id(database_url):
    settings = make_settings(database_url, mail_from="Letters <no-reply@letters.example.org>")
    later = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    ids = set()
    messages = every_kind(settings)
    assert len(messages) >= 6
    for message in messages:
        _, data, utf8 = wire(message, settings.sender, None, now=later)
        email = parsed(data)
        assert not utf8
        assert parsedate_to_datetime(email["Date"]) == later
        assert re.fullmatch(r"<[0-9a-f]{32}@letters\.example\.org>", email["Message-ID"])
        ids.add(email["Message-ID"])
        assert email["To"] == message.to
        # The address appears nowhere but To:, and the body reads whole as plain text.
        assert data.decode().count(message.to) == 1
        plain = email.get_body(preferencelist=("plain",))
        assert plain is not None and len(plain.get_content().strip()) > 20
    assert len(ids) == len(messages)


def test_site_mail_is_auto_generated_and_a_delivery_is_not(database_url):
    settings = make_settings(database_url)
    for message in every_kind(settings):
        email = parsed(wire(message, settings.sender, None)[1])
        if message.channel == "delivery":
            assert email["Auto-Submitted"] is None
            assert email["Reply-To"] == "authors@example.org"
        else:
            assert email["Auto-Submitted"] == "auto-generated"


def test_the_date_is_the_moment_of_sending_not_of_queueing(settings, mailbox):
    backend = make_backend(settings)
    before = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(backend.send(Message("a@microsoft.com", "Subject", "Some text here.", "<p>h</p>")))
    mailbox.wait_for(1)
    sent = parsedate_to_datetime(mailbox.messages[0]["Date"])
    assert before <= sent <= datetime.now(UTC) + timedelta(seconds=1)


def spamassassin_score(data: bytes) -> tuple[float, str]:
    result = subprocess.run(
        ["spamassassin", "-L", "-t", "--cf=use_bayes 0"],
        input=data,
        capture_output=True,
        timeout=120,
    )
    report = result.stdout.decode(errors="replace")
    match = re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)
    assert match, report[:2000]
    return float(match.group(1)), report


@pytest.mark.parametrize("language", ["en", "es"])
def test_spamassassin_finds_nothing_in_any_email_the_site_sends(database_url, language):
    """Every kind in English; in Spanish, the signers' (the others share their form)."""
    need("spamassassin", shutil.which("spamassassin") is not None)
    settings = make_settings(
        database_url,
        mail_from="Letters <no-reply@letters.example.org>",
        delivery_from="deliveries@delivery.example.net",
    )
    with i18n.using(language):
        messages = every_kind(settings)
    for message in messages if language == "en" else messages[:2]:
        sender = settings.delivery_from if message.channel == "delivery" else settings.sender
        score, report = spamassassin_score(wire(message, sender, None)[1])
        fired = re.findall(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)", report, re.MULTILINE)
        assert score < 1.0, report
        assert [rule for points, rule in fired if float(points) != 0] == [], report


def test_a_dkim_signed_email_verifies_with_mail_dkim_through_dns(database_url, mailbox):
    need("libmail-dkim-perl", has_mail_dkim())
    settings = make_settings(
        database_url,
        smtp_url=mailbox.url,
        mail_from="Letters <no-reply@letters.example.org>",
        dkim_selector="mail2026",
        dkim_private_key=rsa_pem().decode(),
    )
    key = settings.dkim
    assert key is not None and key.domain == "letters.example.org"
    backend = make_backend(settings)
    messages = every_kind(settings)[:2]
    for message in messages:
        asyncio.run(backend.send(message))
    mailbox.wait_for(len(messages))
    with serving({key.record_name: [key.record]}) as zone:
        for raw in mailbox.raw:
            assert raw.startswith(b"DKIM-Signature:")
            result = subprocess.run(
                ["perl", str(HERE / "dkim_verify.pl"), str(zone.port)],
                input=raw,
                capture_output=True,
                timeout=60,
            )
            assert result.stdout.decode().split() == ["pass", "letters.example.org"], result
        assert key.record_name in zone.queries


def test_a_changed_message_fails_mail_dkim(database_url):
    need("libmail-dkim-perl", has_mail_dkim())
    key = DKIMConfig.from_pem(rsa_pem(), "s1", "example.org")
    message = Message("a@microsoft.com", "Confirm", "Open http://x/verify/A to confirm.", "<p/>")
    data = wire(message, "no-reply@example.org", key)[1].replace(b"verify/A", b"verify/B")
    with serving({key.record_name: [key.record]}) as zone:
        result = subprocess.run(
            ["perl", str(HERE / "dkim_verify.pl"), str(zone.port)],
            input=data,
            capture_output=True,
            timeout=60,
        )
    assert result.stdout.decode().startswith("fail"), result


def test_mail_from_another_domain_than_the_dkim_domain_is_not_signed():
    key = DKIMConfig.from_pem(rsa_pem(1024), "s1", "example.org")
    message = Message("a@microsoft.com", "S", "Some text here.", "<p/>")
    assert wire(message, "x@mail.example.org", key)[1].startswith(b"DKIM-Signature:")
    assert not wire(message, "x@delivery.example.net", key)[1].startswith(b"DKIM-Signature:")
    assert not wire(message, "x@notexample.org", key)[1].startswith(b"DKIM-Signature:")


def test_dkim_settings_come_together_and_a_bad_key_is_refused_at_start(database_url, tmp_path):
    with pytest.raises(ValueError, match="together"):
        make_settings(database_url, dkim_selector="s1")
    with pytest.raises(ValueError, match="PEM"):
        make_settings(database_url, dkim_selector="s1", dkim_private_key="not a key")
    path = tmp_path / "dkim.pem"
    path.write_bytes(rsa_pem(1024))
    settings = make_settings(
        database_url,
        mail_from="Letters <no-reply@Letters.Example.org>",
        dkim_selector="S1",
        dkim_private_key_file=str(path),
    )
    assert settings.dkim is not None
    assert settings.dkim.record_name == "s1._domainkey.letters.example.org"
    one_line = rsa_pem(1024).decode().replace("\n", "\\n")
    assert make_settings(database_url, dkim_selector="s", dkim_private_key=one_line).dkim
