"""The public ledger, signed snapshots, receipts and `letters verify-ledger`."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

from letters.cli import main
from letters.record import ledger, snapshots
from tests.helpers import assert_consistent, confirm_api, csrf_from, letter_csrf, sign_api
from tests.live import http_client, letters_command, running_server

RECEIPT = re.compile(r'<code class="receipt-code">([^<]+)</code>')


def signed(client, mailbox, email, **fields) -> str:
    """Sign and confirm through the API; returns the receipt."""
    assert sign_api(client, email, **fields).status_code == 202
    response = confirm_api(client, mailbox.last_token(email))
    assert response.status_code == 200, response.text
    return response.json()["receipt"]


def download(client, slug="test-letter", **params) -> list[dict]:
    response = client.get(f"/api/letters/{slug}/ledger", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def three(client, letter, mailbox):
    """Three signers: hidden at GitHub, named at Microsoft, hidden at Microsoft."""
    return [
        signed(client, mailbox, "quiet@github.com", name="Quiet Person"),
        signed(client, mailbox, "shown@microsoft.com", name="Shown Person", show_name=True),
        signed(client, mailbox, "other@microsoft.com", name="Other Quiet"),
    ]


def test_every_confirmation_appends_a_chained_entry_that_recounts(client, db, three):
    entries = download(client)
    assert [entry["seq"] for entry in entries] == [1, 2, 3]
    assert [entry["kind"] for entry in entries] == ["signed"] * 3
    assert entries[0]["prev"] == "0" * 64
    assert all(entries[n]["prev"] == entries[n - 1]["hash"] for n in (1, 2))
    recount = ledger.verify(entries)
    assert (recount.verified, recount.named, recount.hidden) == (3, 1, 2)
    assert dict(recount.organizations) == {"GitHub": 1, "Microsoft": 2}
    detail = client.get("/api/letters/test-letter").json()
    assert detail["ledger"]["length"] == 3 and detail["ledger"]["head"] == recount.head
    # Only what is public: the named signer's name; hidden ones by organization only.
    assert entries[1]["name"] == "Shown Person"
    assert entries[0]["name"] is None and entries[2]["name"] is None
    text = json.dumps(entries)
    for private in ("Quiet Person", "Other Quiet", "quiet@", "other@", "shown@", *three):
        assert private not in text
    # Each receipt is the preimage of exactly one commitment.
    assert [ledger.commitment(receipt) for receipt in three] == [e["commitment"] for e in entries]
    assert_consistent(db)


def test_download_after_an_entry_and_conditional_requests(client, three):
    assert [entry["seq"] for entry in download(client, after="2")] == [3]
    assert download(client, after="3") == []
    first = client.get("/api/letters/test-letter/ledger")
    assert first.headers["x-ledger-length"] == "3"
    again = client.get(
        "/api/letters/test-letter/ledger", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize("after", ["-1", "x", "1.5", "99999999999", "\uff11"])
def test_bad_after_is_a_clear_json_error(client, letter, after):
    response = client.get("/api/letters/test-letter/ledger", params={"after": after})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_drafts_and_unknown_letters_have_no_ledger_or_snapshot(client, engine, letter):
    from tests.conftest import make_letter

    make_letter(engine, "a-draft", status="draft")
    for slug in ("a-draft", "nope", "BAD..slug"):
        for path in ("ledger", "snapshot", "signatures.csv", "daily.csv"):
            response = client.get(f"/api/letters/{slug}/{path}")
            assert response.status_code == 404, (slug, path)
            assert response.json()["error"]["code"] == "not_found"
        assert client.get(f"/letters/{slug}/receipt").status_code == 404


def test_hiding_a_name_blanks_it_in_the_ledger_and_the_chain_still_verifies(
    client, db, letter, mailbox
):
    signed(client, mailbox, "turns@github.com", name="Turncoat Name", title="SRE", show_name=True)
    assert download(client)[0]["name"] == "Turncoat Name"
    # Signing again, hidden this time, changes how the signature is shown.
    sign_api(client, "turns@github.com", name="Turncoat Name", show_name=False)
    again = confirm_api(client, mailbox.last_token("turns@github.com")).json()
    assert (again["outcome"], again["receipt"]) == ("updated", None)
    entries = download(client)
    assert [entry["kind"] for entry in entries] == ["signed", "changed"]
    assert "Turncoat" not in json.dumps(entries) and "SRE" not in json.dumps(entries)
    assert entries[0]["named"] and entries[0]["name_salt"] is None  # blanked, digest kept
    recount = ledger.verify(entries)
    assert (recount.named, recount.hidden, recount.redacted) == (0, 1, 1)
    assert_consistent(db)


def test_the_confirmation_page_shows_a_receipt_that_the_receipt_page_finds(client, letter, mailbox):
    client.post(
        "/letters/test-letter/sign",
        data={"csrftoken": letter_csrf(client), "email": "web@github.com", "show_name": "0"},
    )
    token = mailbox.last_token()
    confirm_page = client.get(f"/verify/{token}")
    done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(confirm_page.text)})
    assert done.status_code == 200
    receipt = RECEIPT.search(done.text).group(1)
    assert done.headers["cache-control"] == "no-store"

    form = client.get("/letters/test-letter/receipt")
    assert form.status_code == 200
    found = client.post(
        "/letters/test-letter/receipt",
        data={"csrftoken": csrf_from(form.text), "receipt": f"  {receipt} "},
    )
    assert found.status_code == 200
    assert "Your signature is counted." in found.text
    assert "a verified employee of GitHub" in found.text
    shouted = client.post(  # typed or copied in upper case: the same receipt
        "/letters/test-letter/receipt",
        data={"csrftoken": csrf_from(form.text), "receipt": receipt.upper()},
    )
    assert shouted.status_code == 200 and "Your signature is counted." in shouted.text

    unknown = client.post(
        "/letters/test-letter/receipt",
        data={"csrftoken": csrf_from(form.text), "receipt": "not-a-receipt"},
    )
    assert unknown.status_code == 404 and "No entry" in unknown.text
    empty = client.post(
        "/letters/test-letter/receipt", data={"csrftoken": csrf_from(form.text), "receipt": ""}
    )
    assert empty.status_code == 422
    forged = client.post("/letters/test-letter/receipt", data={"receipt": receipt})
    assert forged.status_code == 403


def test_snapshot_is_signed_by_the_published_key_and_matches_the_counts(client, three):
    response = client.get("/api/letters/test-letter/snapshot")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jose")
    jwks = client.get("/.well-known/jwks.json").json()
    assert [key["kty"] for key in jwks["keys"]] == ["EC"] and "d" not in jwks["keys"][0]
    header, payload = snapshots.verify(response.text, jwks)
    assert header["alg"] == "ES256" and header["kid"] == jwks["keys"][0]["kid"]
    assert payload["letter"] == "test-letter"
    assert payload["sub"] == "http://testserver/letters/test-letter"
    assert (payload["verified_count"], payload["named_count"], payload["hidden_count"]) == (3, 1, 2)
    assert payload["ledger"]["length"] == 3
    assert payload["ledger"]["head"] == download(client)[-1]["hash"]

    header_part, body_part, signature_part = response.text.split(".")
    forged_body = body_part[:-4] + ("AAAA" if body_part[-4:] != "AAAA" else "BBBB")
    with pytest.raises(snapshots.SnapshotError, match="does not verify"):
        snapshots.verify(f"{header_part}.{forged_body}.{signature_part}", jwks)
    other_key = snapshots.public_jwks(snapshots.signing_key("another instance's secret key!!"))
    with pytest.raises(snapshots.SnapshotError):
        snapshots.verify(response.text, other_key)


def test_the_key_is_the_same_in_every_process_with_the_same_secret():
    first = snapshots.signing_key("s" * 40)
    assert first.thumbprint() == snapshots.signing_key("s" * 40).thumbprint()
    assert first.thumbprint() != snapshots.signing_key("t" * 40).thumbprint()


def save(client, tmp_path):
    """Download the ledger, a snapshot and the key set into files, as a journalist would."""
    paths = {name: tmp_path / name for name in ("ledger.jsonl", "snapshot.jws", "jwks.json")}
    paths["ledger.jsonl"].write_text(client.get("/api/letters/test-letter/ledger").text)
    paths["snapshot.jws"].write_text(client.get("/api/letters/test-letter/snapshot").text)
    paths["jwks.json"].write_text(client.get("/.well-known/jwks.json").text)
    return paths


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["verify-ledger", *map(str, args)])
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_ledger_recounts_files_and_checks_snapshot_and_receipt(
    client, capsys, tmp_path, three
):
    paths = save(client, tmp_path)
    code, out, err = run_cli(
        capsys,
        paths["ledger.jsonl"],
        "--snapshot",
        paths["snapshot.jws"],
        "--jwks",
        paths["jwks.json"],
        "--receipt",
        three[0],
    )
    assert code == 0, err
    assert "Ledger OK: 3 entries" in out
    assert "Recounted: 3 verified signatures (1 named, 2 hidden)" in out
    assert "  Microsoft: 2" in out and "  GitHub: 1" in out
    assert "Snapshot OK: signed by http://testserver" in out
    assert "Receipt: your signature is counted (ledger entries 1)" in out

    code, out, err = run_cli(capsys, paths["ledger.jsonl"], "--receipt", "somebody-elses")
    assert code == 1 and "no entry of this ledger matches the receipt" in err


def tamper(path, change) -> None:
    lines = path.read_text().splitlines()
    change(lines)
    path.write_text("\n".join(lines) + "\n")


def edit_entry(index, **fields):
    def change(lines):
        entry = json.loads(lines[index])
        entry.update(fields)
        lines[index] = json.dumps(entry)

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (edit_entry(0, organization="Microsoft"), "entry 1: its hash does not match"),
        (edit_entry(1, name="Someone Else"), "entry 2: the name shown is not the name chained"),
        (edit_entry(2, kind="withdrawn"), "entry 3: its hash does not match"),
        (lambda lines: lines.pop(1), "entry 3: expected entry 2"),
        (lambda lines: lines.reverse(), "entry 3: expected entry 1"),
        (lambda lines: lines.append(lines[0]), "entry 1: expected entry 4"),
        (lambda lines: lines.insert(1, "{not json"), "line 2 of the ledger is not JSON"),
        (edit_entry(0, seq="1"), "field 'seq' is missing or wrong"),
    ],
)
def test_verify_ledger_detects_a_tampered_ledger(client, capsys, tmp_path, three, change, message):
    paths = save(client, tmp_path)
    tamper(paths["ledger.jsonl"], change)
    code, out, err = run_cli(capsys, paths["ledger.jsonl"])
    assert code == 1, out
    assert err.startswith("FAILED: ledger: " if "JSON" not in message else "FAILED: ")
    assert message in err


def test_a_rehashed_ledger_is_caught_by_the_snapshot(client, capsys, tmp_path, three):
    """Rewriting history and recomputing every hash makes a valid chain: only a snapshot
    signed earlier exposes it, because its head no longer matches."""
    paths = save(client, tmp_path)
    entries = [json.loads(line) for line in paths["ledger.jsonl"].read_text().splitlines()]
    entries[0]["organization"] = "Microsoft"  # move a signature to another company
    prev = "0" * 64
    for entry in entries:
        entry["prev"] = prev
        entry["hash"] = prev = ledger.entry_hash(entry)
    paths["ledger.jsonl"].write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    assert run_cli(capsys, paths["ledger.jsonl"])[0] == 0  # alone, it looks fine
    code, _, err = run_cli(
        capsys,
        paths["ledger.jsonl"],
        "--snapshot",
        paths["snapshot.jws"],
        "--jwks",
        paths["jwks.json"],
    )
    assert code == 1
    assert "entry 3 of the ledger is not the one the snapshot signed" in err


def test_a_truncated_ledger_or_a_forged_snapshot_fails(client, capsys, tmp_path, three):
    paths = save(client, tmp_path)
    tamper(paths["ledger.jsonl"], lambda lines: lines.pop())
    code, _, err = run_cli(
        capsys,
        paths["ledger.jsonl"],
        "--snapshot",
        paths["snapshot.jws"],
        "--jwks",
        paths["jwks.json"],
    )
    assert code == 1 and "entries were removed" in err

    paths = save(client, tmp_path)
    token = paths["snapshot.jws"].read_text()
    header, payload, signature = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["verified_count"] = 3000
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    paths["snapshot.jws"].write_text(f"{header}.{forged}.{signature}")
    code, _, err = run_cli(
        capsys,
        paths["ledger.jsonl"],
        "--snapshot",
        paths["snapshot.jws"],
        "--jwks",
        paths["jwks.json"],
    )
    assert code == 1 and "FAILED: snapshot: the signature does not verify" in err

    code, _, err = run_cli(capsys, tmp_path / "missing.jsonl")
    assert code == 2 and "cannot read" in err


def test_verify_ledger_against_a_running_site(database_url, letter, mailbox, tmp_path):
    with (
        running_server(database_url, tmp_path, smtp_url=mailbox.url) as server,
        http_client(server.url) as client,
    ):
        receipts = []
        for email in ("a@github.com", "b@microsoft.com"):
            assert sign_api(client, email).status_code == 202
            mailbox.wait_for(len(receipts) + 1, timeout=10)
            receipts.append(confirm_api(client, mailbox.last_token(email)).json()["receipt"])
        result = subprocess.run(
            letters_command(
                "verify-ledger", f"{server.url}/letters/test-letter", "--receipt", receipts[1]
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert "Recounted: 2 verified signatures (0 named, 2 hidden)" in result.stdout
    assert "Snapshot OK" in result.stdout
    assert "your signature is counted (ledger entries 2)" in result.stdout


def test_receipts_are_hex_and_safe_to_pass_on_a_command_line():
    receipts = {ledger.new_receipt() for _ in range(2000)}
    assert len(receipts) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{32}", receipt) for receipt in receipts)


# --- Format v2 ----------------------------------------------------------------------------


def _chain(*entries: dict) -> list[dict]:
    """Number, link and hash hand-made entries the way the site does."""
    chained, prev = [], "0" * 64
    for seq, entry in enumerate(entries, start=1):
        full = {
            "seq": seq,
            "day": "2026-11-30",
            "organization": "",
            "named": False,
            "name": None,
            "title": None,
            "name_salt": None,
            "name_digest": "",
            "commitment": "",
            "prev": prev,
            **entry,
        }
        full["hash"] = prev = ledger.entry_hash(full)
        chained.append(full)
    return chained


SIGNED = {"kind": "signed", "organization": "GitHub", "commitment": "c" * 64}
DELIVERED = {"kind": "delivered", "v": 2, "digest": "d" * 64}


def test_v1_entries_hash_exactly_as_before_versions_existed():
    entry = _chain(SIGNED)[0]
    fields = {
        "format": "letters-ledger-v1",
        **{k: entry[k] for k in ("seq", "kind", "day", "organization", "named")},
        **{k: entry[k] for k in ("name_digest", "commitment", "prev")},
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert ledger.entry_hash({**entry, "v": 1}) == entry["hash"]  # an explicit v1 is v1


def test_a_v2_entry_chains_its_digest_and_counts_nothing():
    entries = _chain(SIGNED, DELIVERED)
    fields = {
        "format": "letters-ledger-v2",
        **{k: entries[1][k] for k in ("seq", "kind", "day", "organization", "named")},
        **{k: entries[1][k] for k in ("name_digest", "commitment", "prev", "digest")},
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entries[1]["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    recount = ledger.verify(entries)
    assert (recount.verified, recount.length) == (1, 2)
    assert recount.formats == [[1, 1, 1], [2, 2, 2]]
    assert recount.events == [(2, "delivered", "2026-11-30", "d" * 64)]
    assert recount.history == {"c" * 64: [1]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"digest": "e" * 64}, "altered"),
        ({"digest": "nothex" * 10 + "abcd"}, "needs a SHA-256 digest"),
        ({"digest": ""}, "needs a SHA-256 digest"),
        ({"v": 1}, "unknown kind 'delivered' in format v1"),
        ({"v": 3}, "unknown format version 3"),
        ({"v": "2"}, "unknown format version"),
        ({"organization": "GitHub"}, "must name no signature or organization"),
        ({"commitment": "c" * 64}, "must name no signature or organization"),
    ],
)
def test_a_wrong_v2_entry_does_not_verify(change, message):
    entries = _chain(SIGNED, DELIVERED)
    entries[1].update(change)
    if not change.keys() & {"v", "digest"}:
        entries[1]["hash"] = ledger.entry_hash(entries[1])  # rehashed: still refused
    with pytest.raises(ledger.LedgerError, match=message):
        ledger.verify(entries)


def test_a_v2_entry_of_a_signature_kind_counts_and_carries_no_digest():
    entries = _chain({**SIGNED, "v": 2, "digest": ""})
    assert ledger.verify(entries).verified == 1
    bad = _chain({**SIGNED, "v": 2, "digest": "d" * 64})
    with pytest.raises(ledger.LedgerError, match="has no digest"):
        ledger.verify(bad)


@pytest.mark.parametrize(
    "organization, named, name, title",
    [
        ("Microsoft", False, "", ""),
        ("GitHub", True, "Ada Lovelace", "Engineer"),
        ('Ünïcödé "Corp" \\ 株式会社', True, "Zoë \u2028 O'Neil", 'a "quoted" title'),
    ],
)
def test_an_entry_hashed_from_its_prefix_is_hashed_as_v1(organization, named, name, title):
    """The confirming statement hashes an entry from a prefix made here, `prev` and `seq`
    (in SQL on PostgreSQL): it must be exactly the v1 hash of the same entry."""
    for seq, prev in [(1, ledger.GENESIS), (12345, "ab" * 32)]:
        salt, digest = ledger.new_name(named, name, title)
        entry = {
            "seq": seq,
            "kind": "signed",
            "day": "2026-11-30",
            "organization": organization,
            "named": named,
            "name_digest": digest,
            "commitment": ledger.commitment(ledger.new_receipt()),
            "prev": prev,
        }
        prefix = ledger.chain_prefix(
            "signed", entry["day"], organization, named, digest, entry["commitment"]
        )
        assert ledger.chained_hash(prefix, prev, seq) == ledger.entry_hash(entry)
        assert bool(salt) == named


def test_entries_chained_by_the_confirming_statement_verify_with_odd_organizations(
    client, engine, db, letter, mailbox
):
    """On PostgreSQL the entry's hash is computed in SQL from bytes made in Python: names
    of organizations beyond ASCII and with quotes come out the same as in Python."""
    from sqlalchemy import update
    from sqlmodel import Session, col

    from letters.db import writer
    from letters.models import AllowedDomain

    with Session(writer(engine)) as session:
        session.exec(
            update(AllowedDomain)
            .where(col(AllowedDomain.domain) == "github.com")
            .values(organization='Gïthub "Ltd" \\ 株式会社')
        )
        session.commit()
    signed(client, mailbox, "a@github.com", name="Zoë", show_name=True)
    signed(client, mailbox, "b@github.com")
    entries = download(client)
    recount = ledger.verify(entries)
    assert recount.verified == 2
    assert recount.organizations == {'Gïthub "Ltd" \\ 株式会社': 2}
    assert_consistent(db)
