# ruff: noqa: E501
"""Measure candidate changes to the signing hot path on a patched throwaway copy.

    python -m bench.experiment [--duration 20] [--storm-duration 30] [--skip-storm]

Nothing in the repository changes: the bench's private copy of the app (see
bench.common.run_root) is patched in a temporary folder, each change behind an
environment switch, and bench.cost (and bench.storm) run against that copy with the
switches off (the app as it is) and on, in the same command. Each patch finds its anchor
text or stops with a clear message (the app may have moved on since these were written).

Switches (each is what docs/benchmarks.md recommends; see there for why):
  EXP_NO_PING       no pool pre-ping: one transaction (BEGIN; SELECT 1; ROLLBACK) less
                    per request, per database session
  EXP_RL            the three rate-limit upserts as one statement, run last in the sign
                    transaction, so the hot per-IP and per-domain rows stay locked for one
                    statement and the commit, not for the rest of the transaction
  EXP_NO_RELOAD     confirm returns what it already knows instead of reading the
                    signature and the letter again in a second transaction after commit
  EXP_MAIL_LEASE    the sign transaction inserts the email already leased to its process,
                    which sends it and deletes it: no separate claim transaction
  EXP_CACHE_LETTER  sign takes the letter and its allowed domains from the per-process
                    cache (<= CACHE_SECONDS old) instead of two SELECTs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import common, cost, read, storm

SWITCHES = ("EXP_NO_PING", "EXP_RL", "EXP_NO_RELOAD", "EXP_MAIL_LEASE", "EXP_CACHE_LETTER")

# EXP_FASTREAD (read path, measured with --read): an outermost ASGI layer answers GET
# /api/letters/{slug} and /letters/{slug}/badge.svg from prebuilt bytes (status, headers,
# body captured from the app's own answer) for CACHE_SECONDS, before routing and the
# other middleware; anything else, conditional requests and CORS requests pass through.
FASTREAD = """
import time


class FastRead:
    def __init__(self, app, ttl):
        self.app = app
        self.ttl = ttl
        self.entries = {}

    @staticmethod
    def eligible(path):
        if path.startswith("/api/letters/"):
            return path.count("/") == 3
        return path.startswith("/letters/") and path.endswith("/badge.svg")

    async def __call__(self, scope, receive, send):
        if (
            self.ttl <= 0
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or scope.get("query_string")
            or not self.eligible(scope["path"])
            or any(k in (b"if-none-match", b"origin") for k, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        now = time.monotonic()
        entry = self.entries.get(path)
        if entry is not None and entry[0] > now:
            await send({"type": "http.response.start", "status": 200, "headers": entry[1]})
            await send({"type": "http.response.body", "body": entry[2]})
            return
        captured = {"body": b""}

        async def capture(message):
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, capture)
        headers = captured.get("headers", [])
        if captured.get("status") == 200 and not any(k == b"set-cookie" for k, _ in headers):
            if len(self.entries) > 1000:
                self.entries.clear()
            self.entries[path] = (now + self.ttl, headers, captured["body"])
"""


class PatchError(RuntimeError):
    pass


def replace(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    if text.count(old) < 1:
        raise PatchError(f"{path.name}: anchor not found:\n{old}")
    path.write_text(text.replace(old, new, count))


def patch(root: Path) -> None:
    pkg = root / "letters"
    # EXP_NO_PING
    replace(
        pkg / "db.py",
        "        max_overflow=settings.db_max_overflow,\n        pool_pre_ping=True,",
        "        max_overflow=settings.db_max_overflow,\n"
        '        pool_pre_ping=not __import__("os").environ.get("EXP_NO_PING"),',
    )
    # EXP_RL: one statement ...
    replace(
        pkg / "ratelimit.py",
        "    for limit in limits:\n        table = RateLimitHit.__table__",
        """    if __import__("os").environ.get("EXP_RL") and dialect == "postgresql":
        table = RateLimitHit.__table__  # type: ignore[attr-defined]
        rows = [
            {"key": lim.key, "window_start": window_start, "hits": 1, "expires_at": expires_at}
            for lim in limits
        ]
        statement = (
            insert(table)
            .values(rows)
            .on_conflict_do_update(
                index_elements=[table.c.key, table.c.window_start],
                set_={"hits": table.c.hits + 1},
            )
            .returning(table.c.key, table.c.hits)
        )
        counts = dict((await session.exec(statement)).all())
        for lim in limits:
            if counts[lim.key] > lim.max_hits:
                raise RateLimited(max(1, math.ceil(window_start + window - now.timestamp())))
        return
    for limit in limits:
        table = RateLimitHit.__table__""",
    )
    signing = pkg / "signing.py"
    text = signing.read_text()
    # ... run last in the sign transaction.
    match = re.search(
        r"\n    await hit\(\n        session,\n        (\[.*?\n        \]),\n"
        r"        window,\n        now,\n    \)\n",
        text,
        re.S,
    )
    if not match:
        raise PatchError("signing.py: the hit(...) call was not found")
    text = text.replace(
        match.group(0),
        "\n    limits = " + match.group(1).replace("\n    ", "\n") + "\n"
        '    rl_last = bool(__import__("os").environ.get("EXP_RL"))\n'
        "    if not rl_last:\n        await hit(session, limits, window, now)\n",
    )
    # EXP_MAIL_LEASE (signing side) and the end of EXP_RL.
    old_tail = (
        "        outbox_id = await outbox.enqueue(session, compose(form.address.email, token), now)\n"
        "    await session.commit()\n"
        "    return LinkToSend(email=form.address.email, token=token, letter=letter, "
        "outbox_id=outbox_id)"
    )
    if old_tail not in text:
        raise PatchError(f"signing.py: anchor not found:\n{old_tail}")
    text = text.replace(
        old_tail,
        "        message = compose(form.address.email, token)\n"
        "        outbox_id = await outbox.enqueue(\n"
        '            session, message, now, leased=bool(__import__("os").environ.get('
        '"EXP_MAIL_LEASE"))\n'
        "        )\n"
        "    if rl_last:\n        await hit(session, limits, window, now)\n"
        "    await session.commit()\n"
        "    link = LinkToSend(email=form.address.email, token=token, letter=letter, "
        "outbox_id=outbox_id)\n"
        '    object.__setattr__(link, "message", message if compose is not None else None)\n'
        "    return link",
    )
    # EXP_CACHE_LETTER (signing side)
    old_head = "    now = now or utcnow()\n    letter = await get_public_letter(session, slug)\n"
    if old_head not in text:
        raise PatchError(f"signing.py: anchor not found:\n{old_head}")
    text = text.replace(
        old_head,
        "    now = now or utcnow()\n"
        "    if snapshot is not None:\n        letter = snapshot.letter\n"
        "    else:\n        letter = await get_public_letter(session, slug)\n",
        1,
    )
    old_rules = (
        "    rules = (\n"
        "        await session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == "
        "letter.id))\n"
        "    ).all()\n"
    )
    if old_rules not in text:
        raise PatchError(f"signing.py: anchor not found:\n{old_rules}")
    text = text.replace(
        old_rules,
        "    if snapshot is not None:\n        rules = list(snapshot.domains)\n    else:\n"
        + old_rules.replace("\n    ", "\n        ").replace("    rules", "        rules", 1),
        1,
    )
    old_sig = (
        "    compose: Compose | None = None,\n    now: datetime | None = None,\n) -> LinkToSend:"
    )
    if old_sig not in text:
        raise PatchError(f"signing.py: anchor not found:\n{old_sig}")
    text = text.replace(
        old_sig,
        "    compose: Compose | None = None,\n    now: datetime | None = None,\n"
        "    snapshot: Any = None,\n) -> LinkToSend:",
    )
    # EXP_NO_RELOAD
    old_reload = "    await session.commit()\n    signature = (\n        await session.exec("
    if old_reload not in text:
        raise PatchError(f"signing.py: anchor not found:\n{old_reload}")
    text = text.replace(
        old_reload,
        """    await session.commit()
    if __import__("os").environ.get("EXP_NO_RELOAD"):
        known = Signature(
            letter_id=pending.letter_id, email_hash=pending.email_hash, domain=pending.domain,
            organization=pending.organization, name=pending.name, title=pending.title,
            show_name=pending.show_name, verified_at=now, updated_at=now,
        )
        return Confirmation(letter=view.letter, outcome=outcome, signature=known)
    signature = (
        await session.exec(""",
    )
    signing.write_text(text)
    # EXP_MAIL_LEASE (outbox and view side)
    outbox = pkg / "outbox.py"
    replace(
        outbox,
        "async def enqueue(session: AsyncSession, message: Message, now: datetime | None = None)"
        " -> int:",
        "async def enqueue(\n    session: AsyncSession, message: Message, now: datetime | None = None,"
        " leased: bool = False\n) -> int:",
    )
    replace(
        outbox,
        "        next_attempt_at=now,\n    )\n    session.add(row)",
        "        next_attempt_at=now,\n        locked_until=now + LEASE if leased else None,\n"
        "    )\n    session.add(row)",
    )
    replace(
        outbox,
        "async def send_now(",
        """async def send_leased(
    maker: async_sessionmaker[AsyncSession], backend: MailBackend, message_id: int,
    message: Message,
) -> DrainResult:
    row = OutboxMessage(id=message_id, to_address=message.to, subject=message.subject,
                        text=message.text, html=message.html, attempts=0)
    return await _send_one(maker, backend, row)


async def send_now(""",
    )
    replace(
        pkg / "views" / "common.py",
        "    return BackgroundTask(outbox.send_now, state.writer, state.mail, link.outbox_id)",
        '    if __import__("os").environ.get("EXP_MAIL_LEASE"):\n'
        "        return BackgroundTask(\n"
        "            outbox.send_leased, state.writer, state.mail, link.outbox_id,\n"
        "            link.message,  # type: ignore[attr-defined]\n"
        "        )\n"
        "    return BackgroundTask(outbox.send_now, state.writer, state.mail, link.outbox_id)",
    )
    # EXP_CACHE_LETTER (API view side)
    replace(
        pkg / "views" / "api.py",
        "    try:\n        async with db_session(request, write=True) as session:\n"
        "            link = await request_signature(\n                session,\n",
        '    snapshot = None\n    if __import__("os").environ.get("EXP_CACHE_LETTER"):\n'
        "        try:\n"
        '            snapshot = await letter_snapshot(request, request.path_params["slug"])\n'
        "        except LetterNotFound:\n            return not_found()\n"
        "    try:\n        async with db_session(request, write=True) as session:\n"
        "            link = await request_signature(\n                session,\n"
        "                snapshot=snapshot,\n",
    )


def patch_fastread(root: Path) -> None:
    (root / "letters" / "_fastread.py").write_text(FASTREAD)
    replace(
        root / "letters" / "app.py",
        "    app.state.settings = settings\n",
        '    if __import__("os").environ.get("EXP_FASTREAD"):\n'
        "        from letters._fastread import FastRead\n\n"
        "        app.add_middleware(FastRead, ttl=settings.cache_seconds)\n"
        "    app.state.settings = settings\n",
    )


def patched_root() -> Path:
    source = common.run_root()
    root = Path(tempfile.mkdtemp(prefix="letters-bench-exp-"))
    shutil.copytree(source, root, dirs_exist_ok=True)
    patch(root)
    patch_fastread(root)
    return root


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per cost phase")
    parser.add_argument("--storm-duration", type=float, default=30.0)
    parser.add_argument("--storm-workers", default="2")
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument(
        "--read",
        action="store_true",
        help="also measure the read path with EXP_FASTREAD off and on",
    )
    parser.add_argument("--read-rounds", type=int, default=2)
    parser.add_argument(
        "--each", action="store_true", help="also measure the cost with each switch on alone"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    info = common.machine()  # takes the snapshot and its fingerprint first
    common.print_machine(info)
    root = patched_root()
    common._RUN_ROOT = root  # every server below runs the patched copy
    variants: list[tuple[str, dict[str, str]]] = [("as is (switches off)", {})]
    if args.each:
        variants += [(name, {name: "1"}) for name in SWITCHES]
    variants.append(("all switches on", {name: "1" for name in SWITCHES}))
    out: dict[str, Any] = {"machine": info, "cost": {}, "storm": {}}
    saved = dict(os.environ)
    try:
        for label, switches in [] if args.skip_cost else variants:
            os.environ.clear()
            os.environ.update(saved)
            os.environ.update(switches)
            print(f"\n=== cost: {label}")
            out["cost"][label] = cost.main(["--duration", str(args.duration)])
        if not args.skip_storm:
            for label, switches in (variants[0], variants[-1]):
                os.environ.clear()
                os.environ.update(saved)
                os.environ.update(switches)
                print(f"\n=== storm: {label}")
                out["storm"][label] = storm.main(
                    [
                        "--duration",
                        str(args.storm_duration),
                        "--workers",
                        args.storm_workers,
                    ]
                )
        if args.read:
            out["read"] = {}
            for label, switches in (("as is", {}), ("EXP_FASTREAD", {"EXP_FASTREAD": "1"})):
                os.environ.clear()
                os.environ.update(saved)
                os.environ.update(switches)
                print(f"\n=== read: {label}")
                out["read"][label] = read.main(
                    [
                        "--workers",
                        "1",
                        "--rounds",
                        str(args.read_rounds),
                        "--targets",
                        "bare,api,html,badge",
                    ]
                )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)
    print("\nexperiment summary (CPU ms per request; confirmed/s)")
    for label, results in out["cost"].items():
        parts = []
        for r in results:
            c = r["cpu_ms_per_request"]
            parts.append(
                f"{r['phase']}: app {c.get('app workers', 0):.1f} + db "
                f"{c.get('postgresql backends of the bench database', 0):.1f} "
                f"({r['transactions_per_request']:.1f} xacts)"
            )
        print(f"  {label:22} " + "; ".join(parts))
    for label, results in out["storm"].items():
        for r in results:
            print(
                f"  storm {label:22} workers={r['workers']}: {r['confirmed_per_s']:.0f} "
                f"confirmed/s, {r['requests_per_s']:.0f} req/s, exact={r['exact']}"
            )
    for label, results in out.get("read", {}).items():
        for r in results:
            ratios = ", ".join(
                f"{k} {v['ratio']:.2f} ({v['median_cpu_us_per_req']:.0f} us)"
                for k, v in r["summary"].items()
            )
            print(f"  read {label:14} workers={r['workers']}: {ratios}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
