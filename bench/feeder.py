"""Stands in for `letters worker` in the storm's outbox mode (MAIL_IN_APP=false).

    python -m bench.feeder --database-url URL --tokens /tmp/tokens.txt

Takes queued emails out of `outbox_message` as a sender would (claims rows with
FOR UPDATE SKIP LOCKED and deletes them, in batches) but, instead of handing them to an
SMTP server, appends the token of each link to the tokens file for bench/storm.lua.
It does not do what a real sender does per message (lease update, SMTP session,
delete per message), so this mode leaves the cost of sending mail out of the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import time

import psycopg

LINK = re.compile(r"/verify/([A-Za-z0-9_.\-]+)")
TAKE = """
DELETE FROM outbox_message WHERE id IN (
    SELECT id FROM outbox_message ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED
) RETURNING text
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fd = os.open(args.tokens, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    taken = 0
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        print("feeder ready", flush=True)
        while not stop:
            rows = conn.execute(TAKE).fetchall()
            lines = []
            for (text,) in rows:
                match = LINK.search(text)
                if match:
                    lines.append(match.group(1) + " END\n")
            if lines:
                # Whole lines only, each batch in one write.
                os.write(fd, "".join(lines).encode())
                taken += len(lines)
            if len(rows) < 500:
                time.sleep(args.interval)
    os.close(fd)
    print(f"feeder tokens={taken}", flush=True)


if __name__ == "__main__":
    main()
