"""Mail backends and the signing email."""

from __future__ import annotations

import asyncio
import io

from letters.mail.backend import Channels, ConsoleBackend, Message, make_backend
from letters.mail.compose import render
from tests.conftest import make_settings


def test_console_backend_prints_the_message():
    stream = io.StringIO()
    backend = ConsoleBackend("Letters <no-reply@x>", stream=stream)
    asyncio.run(backend.send(Message("a@b.com", "Subject here", "Body with link", "<p>x</p>")))
    out = stream.getvalue()
    assert "To: a@b.com" in out and "Subject: Subject here" in out and "Body with link" in out


def test_without_smtp_url_the_console_backend_is_used(tmp_path):
    settings = make_settings("sqlite:///x.db", smtp_url="", instance_path=tmp_path)
    backend = make_backend(settings)
    assert isinstance(backend, Channels) and isinstance(backend.site, ConsoleBackend)
    assert backend.delivery is None  # no DELIVERY_FROM: nothing can be delivered by email


def test_the_signing_email_is_short_plain_and_neutral():
    message = render(
        "signers/confirm_signature",
        "a@microsoft.com",
        {"link": "http://x/verify/T<&>", "hours": 24, "site": "http://x"},
    )
    assert message.subject == "Confirm your email address"
    assert "http://x/verify/T<&>" in message.text  # plain text is not HTML-escaped
    assert "T&lt;&amp;&gt;" in message.html  # the HTML part is
    assert len(message.text.split()) < 80


def test_the_email_goes_through_smtp_as_text_and_html(client, letter, mailbox):
    from tests.helpers import sign_api

    sign_api(client, "a@microsoft.com")
    mailbox.wait_for(1)
    message = mailbox.messages[0]
    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None
    assert message["From"] == "Letters <no-reply@localhost>"
    assert mailbox.envelopes[0][1] == ["a@microsoft.com"]
