"""A change of SECRET_KEY: earlier signers still recognized, links still working, snapshots
still verifying, and what they sealed sealed again under the new key."""

from __future__ import annotations

import asyncio
import json

from sqlmodel import Session, select
from starlette.testclient import TestClient

from letters.app import create_app
from letters.cli import main
from letters.db import make_async_engine, make_sessionmaker, make_sync_engine, writer
from letters.mail import outbox
from letters.mail.backend import Message
from letters.models import OutboxMessage, Signature
from letters.record import names, snapshots
from letters.sealing import keyring
from letters.tokens import Signer
from tests.conftest import SECRET
from tests.helpers import assert_consistent, confirm_api, names_of, sign_api
from tests.record.test_ledger import run_cli
from tests.record.test_signer_control import link_for

NEW_SECRET = "the-new-secret-key-after-rotation-0123456789abcdef"


def rotated(settings):
    return settings.model_copy(update={"secret_key": NEW_SECRET, "old_secret_keys": SECRET})


def test_after_a_key_change_signers_links_and_snapshots_still_count(
    settings, letter, mailbox, db, tmp_path, capsys
):
    with TestClient(create_app(settings)) as client:
        assert sign_api(client, "alice@microsoft.com", name="Alice Hiddenkey").status_code == 202
        mailbox.wait_for(1)
        assert confirm_api(client, mailbox.last_token()).status_code == 200
        assert sign_api(client, "carol@github.com", name="Carol", show_name=True).status_code == 202
        mailbox.wait_for(2)
        assert confirm_api(client, mailbox.last_token()).status_code == 200
        manage = link_for(client, mailbox, "carol@github.com")
        assert sign_api(client, "bob@microsoft.com").status_code == 202  # not confirmed yet
        mailbox.wait_for(4)
        pending = mailbox.last_token(to="bob@microsoft.com")
        before = client.get("/api/letters/test-letter/snapshot").text
    assert assert_consistent(db)["verified"] == 2

    new = rotated(settings)
    with TestClient(create_app(new)) as client:
        # Alice signs again: recognized under the old key, counted once, moved to the new.
        count = len(mailbox.messages)
        assert sign_api(client, "alice@microsoft.com", name="Alice Hiddenkey").status_code == 202
        mailbox.wait_for(count + 1)
        again = confirm_api(client, mailbox.last_token(to="alice@microsoft.com"))
        assert again.json()["outcome"] == "updated", again.text
        # Links made before the change still work.
        assert confirm_api(client, pending).json()["outcome"] == "verified"
        assert client.get(f"/manage/{manage}").status_code == 200
        after = client.get("/api/letters/test-letter/snapshot").text
        jwks = client.get("/.well-known/jwks.json").json()
        ledger_file = tmp_path / "ledger.jsonl"
        ledger_file.write_text(client.get("/api/letters/test-letter/ledger").text)
    assert assert_consistent(db)["verified"] == 3
    db.rollback()
    alice = db.exec(select(Signature).where(Signature.show_name == False)).all()  # noqa: E712
    new_hash = Signer(NEW_SECRET).email_hash("alice@microsoft.com")
    [moved] = [s for s in alice if s.email_hash == new_hash]
    assert names.of_signature(new.keys, moved) == ("Alice Hiddenkey", "")
    assert names_of(moved) == ("", "")  # sealed now under the new key: the old one is not enough
    assert new.keys.current_id in moved.sealed_name
    # Both keys are published: snapshots signed before and after the change verify.
    assert len(jwks["keys"]) == 2
    for snapshot in (before, after):
        snapshots.verify(snapshot, jwks)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    for number, snapshot in enumerate((before, after)):
        path = tmp_path / f"snapshot{number}.jws"
        path.write_text(snapshot)
        code, out, err = run_cli(capsys, ledger_file, "--snapshot", path, "--jwks", jwks_file)
        assert code == 0, err
        assert "Ledger OK: 3 entries" in out


def queue_one(settings) -> None:
    async def main() -> None:
        engine = make_async_engine(settings)
        async with make_sessionmaker(writer(engine))() as session:
            message = Message("queued@example.org", "Subject", "text", "<p>html</p>")
            await outbox.enqueue(session, settings.keys, message)
            await session.commit()
        await engine.dispose()

    asyncio.run(main())


def test_rotate_key_on_the_instance_file_keeps_the_old_key_and_reseals(
    monkeypatch, tmp_path, capsys
):
    from letters.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    main(["migrate"])
    first = Settings()
    old_key = first.secret_key
    assert (tmp_path / "secret_key").read_text() == old_key
    queue_one(first)
    main(["rotate-key"])
    out = capsys.readouterr().out
    assert "Sealed again under the current key: 1 queued emails" in out and old_key not in out
    second = Settings()
    assert second.secret_key != old_key
    assert second.keys.older == (old_key,)
    engine = make_sync_engine(second)
    with Session(engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()
    engine.dispose()
    assert second.keys.sealed_under_current(row.sealed)
    assert outbox.message_of(row, keyring(second.secret_key)).to == "queued@example.org"
    # An operator whose key comes from the environment is told what to set.
    monkeypatch.setenv("SECRET_KEY", second.secret_key)
    monkeypatch.setenv("OLD_SECRET_KEYS", old_key)
    main(["rotate-key"])
    out = capsys.readouterr().out
    assert "OLD_SECRET_KEYS=" + second.secret_key + "," + old_key in out
    assert Settings().secret_key == second.secret_key  # nothing changed by itself
