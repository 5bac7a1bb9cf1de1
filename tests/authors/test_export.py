"""The export for delivery: public names and hidden counts, never a hidden name or an address."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import Session

from letters.authors.export import BATCH, HEADER
from letters.db import writer
from letters.models import Signature, utcnow
from tests.authors.helpers import (
    create_draft,
    letter_row,
    post_form,
    publish,
    sign,
    sign_in_as,
)

SLUG = "drop-the-contract"
CSV = f"/authors/letters/{SLUG}/export.csv"


@pytest.fixture
def signed(client, engine, mailbox):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    sign(client, mailbox, "ada@github.com", SLUG, name="Ada L", title="Engineer", show_name=True)
    sign(client, mailbox, "eve@microsoft.com", SLUG, name='=HYPERLINK("x")', show_name=True)
    sign(client, mailbox, "secret@github.com", SLUG, name="Secret Person", title="Spy")
    sign(client, mailbox, "quiet@github.com", SLUG)
    sign(client, mailbox, "staff@eu.corp.example", SLUG)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_has_public_names_and_hidden_counts_that_add_up(client, signed, db):
    response = client.get(CSV)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert f'filename="{SLUG}-signatures-' in response.headers["content-disposition"]
    assert response.text.splitlines()[0] == ",".join(HEADER)
    rows = rows_of(response.text)
    named = [r for r in rows if r["type"] == "named"]
    assert [(r["name"], r["title"], r["organization"], r["version"]) for r in named] == [
        ("Ada L", "Engineer", "GitHub", "1"),
        ('\'=HYPERLINK("x")', "", "Microsoft", "1"),  # not a formula in a spreadsheet
    ]
    assert all(r["signed_at"].endswith("Z") for r in named)
    hidden = {r["organization"]: int(r["signatures"]) for r in rows if r["type"] == "hidden"}
    assert hidden == {"GitHub": 2, "Example Corp": 1}
    assert sum(int(r["signatures"]) for r in rows) == letter_row(db, SLUG).verified_count == 5
    for secret in ["Secret Person", "Spy", "@", "secret", "quiet"]:
        assert secret not in response.text


def test_the_print_page_groups_by_organization(client, signed):
    page = client.get(f"/authors/letters/{SLUG}/export")
    assert page.status_code == 200
    html = page.text
    assert "Signed by 5 verified employees" in html
    assert "Ada L</li>" not in html and "Ada L, Engineer" in html
    assert "and 2 verified employees of GitHub who chose not to show their name" in html
    assert "and 1 verified employee of Example Corp who chose not to show their name" in html
    assert html.index("GitHub <span") < html.index("Microsoft <span")  # largest first
    assert "Secret Person" not in html and "@github.com" not in html
    assert "css/authors.css" in html  # its print styles hide the navigation
    assert "<strong>drop the contract</strong>" in html  # the letter itself, for delivery


def test_hidden_and_invalidated_signatures_leave_the_export(client, signed, db):
    from sqlmodel import select

    db.rollback()
    ada = db.exec(select(Signature).where(Signature.name == "Ada L")).one()
    eve = db.exec(select(Signature).where(Signature.organization == "Microsoft")).one()
    page = f"/authors/letters/{SLUG}/signatures"
    post_form(client, f"{page}/{ada.id}/hide", page=page)
    post_form(client, f"{page}/{eve.id}/invalidate", {"reason": "spam"}, page=page)
    rows = rows_of(client.get(CSV).text)
    assert [r for r in rows if r["type"] == "named"] == []
    hidden = {r["organization"]: int(r["signatures"]) for r in rows if r["type"] == "hidden"}
    assert hidden == {"GitHub": 3, "Example Corp": 1}
    assert "Ada" not in client.get(f"/authors/letters/{SLUG}/export").text


def test_a_large_export_comes_in_batches(client, engine, db):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    letter = letter_row(db, SLUG)
    now = utcnow()
    with Session(writer(engine)) as session:
        for number in range(BATCH + 5):
            session.add(
                Signature(
                    letter_id=letter.id,
                    email_hash=f"{number:064x}",
                    domain="github.com",
                    organization="GitHub",
                    name=f"Person {number}",
                    show_name=number % 10 != 0,
                    commitment=f"{number:064x}",
                    verified_at=now,
                    updated_at=now,
                )
            )
        session.commit()
    rows = rows_of(client.get(CSV).text)
    named = [r for r in rows if r["type"] == "named"]
    assert len(named) == BATCH + 5 - 101
    assert len({r["name"] for r in named}) == len(named)  # none twice across batches
    assert [r["signatures"] for r in rows if r["type"] == "hidden"] == ["101"]


def test_a_draft_exports_nothing(client, engine):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    assert rows_of(client.get(CSV).text) == []
    assert "No verified signatures yet" in client.get(f"/authors/letters/{SLUG}/export").text
