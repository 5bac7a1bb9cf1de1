"""A fast local SMTP sink for the signing storm: keeps only the magic-link tokens.

    python -m bench.sink --port 2525 --tokens /tmp/tokens.txt

Accepts every message (aiosmtpd, loopback only), takes the `/verify/<token>` link out of
it and appends "<token> END" to the tokens file in one write, for bench/storm.lua to
confirm. Stops on SIGTERM/SIGINT and prints how many messages and tokens it saw.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import re
import signal
import threading

from aiosmtpd.controller import Controller

LINK = re.compile(rb"/verify/([A-Za-z0-9_.\-]+)")


def token_of(content: bytes) -> bytes | None:
    # Fast path: the text part is quoted-printable or 7bit; undo soft line breaks.
    raw = content.replace(b"=\r\n", b"").replace(b"=\n", b"")
    match = LINK.search(raw)
    if match:
        return match.group(1)
    message = email.message_from_bytes(content, policy=email.policy.default)
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    if body is None:
        return None
    match = LINK.search(body.get_content().encode())
    return match.group(1) if match else None


class Handler:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.messages = 0
        self.tokens = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages += 1
        token = token_of(envelope.content)  # type: ignore[attr-defined]
        if token is not None:
            os.write(self.fd, token + b" END\n")  # one write: readers never see half a line
            self.tokens += 1
        return "250 Message accepted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", required=True)
    args = parser.parse_args()
    fd = os.open(args.tokens, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = Handler(fd)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    print("sink ready", flush=True)
    stop.wait()
    controller.stop()
    os.close(fd)
    print(f"sink messages={handler.messages} tokens={handler.tokens}", flush=True)


if __name__ == "__main__":
    main()
