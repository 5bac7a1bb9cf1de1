"""The `letters` command: serve, migrate, import."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from letters.importer import LetterFileError, import_file, load_demo, parse_letter
from letters.settings import Settings

Handler = Callable[[argparse.Namespace], None]


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as error:
        sys.exit(f"letters: invalid settings: {error}")


def migrate(settings: Settings) -> None:
    from letters.migrate import upgrade

    upgrade(settings)


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    migrate(settings)
    print("Database is up to date.")


def cmd_import(args: argparse.Namespace) -> None:
    from letters.authors.accounts import attach_author, normalize_email
    from letters.db import make_sync_engine
    from letters.forms import FieldError

    settings = _settings()
    path = Path(args.file)
    try:
        letter_file = parse_letter(path.read_text(encoding="utf-8"))
    except OSError as error:
        sys.exit(f"letters import: cannot read {path}: {error.strerror}")
    except LetterFileError as error:
        sys.exit(f"letters import: {path}: {error}")
    author = None
    if args.author is not None:
        try:
            author = normalize_email(args.author)
        except FieldError as error:
            sys.exit(f"letters import: --author: {error.message}")
    engine = make_sync_engine(settings)
    try:
        imported = import_file(engine, letter_file)
        role = attach_author(engine, imported.letter.slug, author) if author else None
    finally:
        engine.dispose()
    letter = imported.letter
    url = f"{settings.base_url}/letters/{letter.slug}"
    if imported.created:
        print(f"Created letter '{letter.slug}' ({letter.status}): {url}")
    elif imported.changes:
        print(f"Updated letter '{letter.slug}' ({letter.status}): {url}")
    else:
        print(f"Letter '{letter.slug}' ({letter.status}) is as the file says: {url}")
    for change in imported.changes:
        print(f"  changed: {change}")
    for kept in imported.kept:
        print(f"  kept: {kept}")
    if author is not None:
        state = f"now its {role}" if role else "already one of its authors"
        print(f"  author: {author} is {state}")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from letters.db import make_sync_engine
    from letters.web.logs import uvicorn_log_config

    if "BASE_URL" not in os.environ:
        # Links in emails must point at this server; worker processes read it from here.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
        os.environ["BASE_URL"] = f"http://{host}:{args.port}"
    settings = _settings()
    if args.demo or settings.environment == "development":
        migrate(settings)
    if args.demo:
        engine = make_sync_engine(settings)
        demo = load_demo(engine)
        engine.dispose()
        state = "loaded" if demo.created else f"already here ({demo.letter.status}), left as it is"
        print(f"Demo letter {state}: {settings.base_url}/letters/{demo.letter.slug}")
    if not settings.smtp_url:
        print("SMTP_URL is not set: emails are printed here instead of being sent.")
    uvicorn.run(
        "letters.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_config=uvicorn_log_config(),
        access_log=settings.access_log,
        server_header=False,
        # Uvicorn restarts a worker that is not ready within this many seconds; its default
        # of 5 kills workers still importing on a busy or slow machine, over and over.
        timeout_worker_healthcheck=30,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    import asyncio
    import signal

    from letters.db import make_async_engine, make_sessionmaker, writer
    from letters.jobs import preparer
    from letters.mail import outbox
    from letters.mail.backend import make_backend
    from letters.record.retention import purge_expired

    settings = _settings()

    async def run() -> None:
        engine = make_async_engine(settings)
        maker = make_sessionmaker(writer(engine))
        backend = make_backend(settings)
        prepare = preparer(settings, maker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            while True:
                result = await outbox.drain(maker, backend, settings.keys, prepare=prepare)
                if result.sent or result.failed or result.dropped:
                    print(
                        f"sent {result.sent}, failed {result.failed}, dropped {result.dropped}",
                        flush=True,
                    )
                await purge_expired(maker)
                if args.once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=args.interval)
                if stop.is_set():
                    break
        finally:
            await engine.dispose()

    asyncio.run(run())


def cmd_rotate_key(args: argparse.Namespace) -> None:
    import asyncio
    import secrets

    from letters.settings import SECRET_FILE, rotate_instance_secret

    settings = _settings()
    if not args.reseal:
        new_key = secrets.token_urlsafe(48)
        instance_file = settings.instance_path / SECRET_FILE
        from_file = (
            "SECRET_KEY" not in os.environ
            and instance_file.exists()
            and instance_file.read_text().strip() == settings.secret_key
        )
        if not from_file:
            older = ",".join([settings.secret_key, *settings.keys.older])
            print("A new key. In every process (web and worker), set")
            print(f"  SECRET_KEY={new_key}")
            print(f"  OLD_SECRET_KEYS={older}")
            print("restart them all, then run `letters rotate-key --reseal`.")
            return
        rotate_instance_secret(settings.instance_path, new_key)
        print(f"The instance's key in {instance_file} is new; the old one is kept in")
        print(f"{settings.instance_path / 'old_secret_keys'}. Restart the server.")
        settings = _settings()

    from letters.db import make_async_engine, make_sessionmaker, writer
    from letters.record.rekey import reseal

    async def run() -> None:
        engine = make_async_engine(settings)
        try:
            async with make_sessionmaker(writer(engine))() as session:
                done = await reseal(session, settings.keys)
                await session.commit()
        finally:
            await engine.dispose()
        print(
            f"Sealed again under the current key: {done.outbox} queued emails, "
            f"{done.signatures} hidden names, {done.pending} pending signatures' names "
            f"({done.unopened} that no active key opens were left)."
        )

    asyncio.run(run())


def cmd_purge(args: argparse.Namespace) -> None:
    import asyncio

    from letters.db import make_async_engine, make_sessionmaker, writer
    from letters.record.retention import purge_expired

    settings = _settings()

    async def run() -> None:
        engine = make_async_engine(settings)
        try:
            purged = await purge_expired(make_sessionmaker(writer(engine)))
        finally:
            await engine.dispose()
        print(f"Deleted {purged.pending_signatures} expired pending signatures.")
        print(f"Deleted {purged.manage_links} expired manage links.")
        print(f"Deleted {purged.rate_limit_rows} expired rate-limit rows.")
        print(
            f"Erased the names of {purged.letters_erased} letters "
            f"({purged.names_erased} signatures, {purged.ledger_names_erased} ledger entries)."
        )

    asyncio.run(run())


def cmd_verify_ledger(args: argparse.Namespace) -> None:
    from letters.checker import CheckFailed, SourceError, check, print_report, sources_for

    try:
        sources = sources_for(args.target, args.snapshot, args.jwks)
        report = check(sources, receipt=args.receipt)
    except SourceError as error:
        print(f"letters verify-ledger: cannot read {error}", file=sys.stderr)
        sys.exit(2)
    except CheckFailed as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
    print_report(report, sys.stdout)
    if args.receipt is not None and not report.receipt_entries:
        print("FAILED: no entry of this ledger matches the receipt", file=sys.stderr)
        sys.exit(1)


def cmd_admin(args: argparse.Namespace) -> None:
    from letters.authors.accounts import add_admin, admins
    from letters.db import make_sync_engine
    from letters.forms import FieldError

    settings = _settings()
    engine = make_sync_engine(settings)
    try:
        if args.admin_command == "list":
            for email in admins(engine):
                print(email)
            return
        try:
            created = add_admin(engine, args.email)
        except FieldError as error:
            sys.exit(f"letters admin add: {error.message}")
    finally:
        engine.dispose()
    action = "Added admin" if created else "Made admin"
    print(f"{action} {args.email.strip()}: sign in at {settings.base_url}/authors/sign-in")


def cmd_mail_check(args: argparse.Namespace) -> None:
    from letters.mail import check

    settings = _settings()
    report = check.run(settings, lambda: check.make_resolver(args.dns))
    if args.send_to:
        report.section("Sending the sample").append(check.send_sample(settings, args.send_to))
    check.print_report(report, sys.stdout)
    if report.exit_code:
        sys.exit(report.exit_code)


def _dns_server(value: str) -> str:
    from letters.mail.check import parse_server

    try:
        parse_server(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _address(value: str) -> str:
    if value.count("@") != 1 or not value.isprintable() or " " in value:
        raise argparse.ArgumentTypeError(f"not an email address: {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="letters", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        """The subcommand `name`, run by `handler` with the parsed arguments."""
        sub = commands.add_parser(name, help=help)
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", cmd_serve, "run the web server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument("--demo", action="store_true", help="load the demo letter first")
    serve.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy)",
    )
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")

    command("migrate", cmd_migrate, "upgrade the database schema")

    worker = command("worker", cmd_worker, "send the email outbox")
    worker.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    worker.add_argument("--once", action="store_true", help="send what is due, then exit")

    import_parser = command("import", cmd_import, "create or update a letter from Markdown")
    import_parser.add_argument("file", metavar="LETTER.md")
    import_parser.add_argument(
        "--author",
        metavar="EMAIL",
        help="make EMAIL an author of the letter (its owner if it has none), to run it at /authors",
    )

    admin = command("admin", cmd_admin, "manage the admins who allow letter authors")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    admin_add = admin_commands.add_parser("add", help="make EMAIL an admin (and an author)")
    admin_add.add_argument("email", metavar="EMAIL")
    admin_commands.add_parser("list", help="list the admins")

    command(
        "purge", cmd_purge, "delete expired links and rate-limit rows; erase names that are due"
    )

    rotate = command(
        "rotate-key",
        cmd_rotate_key,
        "change SECRET_KEY, keeping the old one for what it signed, sealed and hashed",
    )
    rotate.add_argument(
        "--reseal",
        action="store_true",
        help="only seal again, under the current SECRET_KEY, what an older key sealed",
    )

    verify_ledger = command(
        "verify-ledger",
        cmd_verify_ledger,
        "recount a letter from its public ledger; check a signed snapshot and a receipt",
    )
    verify_ledger.add_argument(
        "target",
        metavar="URL_OR_FILE",
        help="a letter's address (reads its ledger, snapshot and key from the site) "
        "or a downloaded ledger (.jsonl)",
    )
    verify_ledger.add_argument("--snapshot", help="a signed snapshot (file or URL)")
    verify_ledger.add_argument("--jwks", help="the instance's public keys (file or URL)")
    verify_ledger.add_argument("--receipt", help="check that this receipt's signature is counted")

    mail_check = command(
        "mail-check",
        cmd_mail_check,
        "check the sending settings, a sample email and the SPF, DKIM and DMARC records; "
        "exit 1 if mail would likely go to spam",
    )
    mail_check.add_argument(
        "--send-to", metavar="ADDRESS", type=_address, help="also send the sample to ADDRESS"
    )
    mail_check.add_argument(
        "--dns",
        metavar="SERVER",
        type=_dns_server,
        help="ask this DNS server (HOST or HOST:PORT) instead of the system's resolver",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
