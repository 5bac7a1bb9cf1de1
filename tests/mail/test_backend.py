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


class CountingMailbox:
    """A real SMTP server (aiosmtpd) that counts the sessions it was opened for and can
    drop its clients, as a server that restarts or times idle clients out does."""

    def __init__(self) -> None:
        from tests.conftest import free_port

        self.sessions = 0
        self.messages: list[str] = []
        self.port = free_port()
        self.controller = self._controller()

    def _controller(self):
        from aiosmtpd.controller import Controller

        return Controller(self, hostname="127.0.0.1", port=self.port)

    def restart(self) -> None:
        self.controller.stop()
        self.controller = self._controller()
        self.controller.start()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.rcpt_tos[0])
        return "250 OK"


def test_smtp_sessions_are_reused_across_messages_and_replaced_when_dropped(tmp_path):
    server = CountingMailbox()
    server.controller.start()
    try:
        url = f"smtp://127.0.0.1:{server.port}?starttls=off"
        backend = make_backend(
            make_settings("sqlite:///x.db", smtp_url=url, instance_path=tmp_path)
        )

        async def main() -> None:
            for n in range(5):
                await backend.send(Message(f"p{n}@b.com", "S", "text", "<p>html</p>"))
            assert server.sessions == 1  # five messages, one session
            # Five at once: as many sessions as messages in flight, then kept for reuse.
            await asyncio.gather(
                *(backend.send(Message(f"q{n}@b.com", "S", "t", "<p>h</p>")) for n in range(5))
            )
            opened = server.sessions
            assert 1 < opened <= 6
            # The server drops every client (a restart): the next message goes over a new
            # session, not into an error.
            server.restart()
            await backend.send(Message("after@b.com", "S", "text", "<p>html</p>"))
            assert server.sessions == opened + 1

        asyncio.run(main())
    finally:
        server.controller.stop()
    assert sorted(server.messages) == sorted(
        [f"p{n}@b.com" for n in range(5)] + [f"q{n}@b.com" for n in range(5)] + ["after@b.com"]
    )
