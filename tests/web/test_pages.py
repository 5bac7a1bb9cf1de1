"""The HTML pages, used the way a browser without JavaScript uses them."""

from __future__ import annotations

import re

from letters.importer import import_letter, parse_letter
from tests.conftest import TEST_LETTER
from tests.helpers import assert_consistent, confirm_api, counts, csrf_from, letter_csrf, sign_api


def sign_form(client, slug="test-letter", **fields):
    data = {"csrftoken": letter_csrf(client, slug), "show_name": "0", **fields}
    return client.post(f"/letters/{slug}/sign", data=data, follow_redirects=False)


def test_letter_page_shows_the_letter_counts_and_form(client, letter):
    page = client.get("/letters/test-letter")
    assert page.status_code == 200
    assert '<h1 lang="en">Test letter</h1>' in page.text
    assert "<strong>better</strong>" in page.text  # Markdown rendered
    assert re.search(r"0</strong>\s+verified signatures", page.text)
    assert 'action="/letters/test-letter/sign"' in page.text
    # Works without JavaScript: the only script is an external, deferred enhancement.
    assert page.text.count("<script") == 1
    assert re.search(r'<script src="/static/js/live.js\?v=\w+" defer></script>', page.text)
    assert "No verified signatures yet." in page.text


def test_index_lists_public_letters_only(client, engine, letter):
    from tests.conftest import make_letter

    make_letter(engine, "hidden-draft", status="draft")
    page = client.get("/")
    assert "Test letter" in page.text
    assert "hidden-draft" not in page.text


def test_raw_html_in_a_body_never_reaches_the_page(client, engine):
    body = (
        '<script>alert("x")</script>\n\n<img src=x onerror=alert(1)>\n\n[link](javascript:alert(1))'
    )
    import_letter(engine, parse_letter(TEST_LETTER.replace("We ask for **better** things.", body)))
    page = client.get("/letters/test-letter").text
    assert "<script>" not in page
    assert "<img" not in page
    assert 'href="javascript' not in page


def test_the_whole_flow_without_javascript(client, letter, mailbox, db):
    response = sign_form(
        client,
        email="Ada@Microsoft.com",
        name="Ada Lovelace",
        show_name="1",
        title="Principal Engineer",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/letters/test-letter/check-email"
    check = client.get(response.headers["location"])
    assert "Check your work email" in check.text
    assert "spam" in check.text
    assert "ada@microsoft.com" not in check.text.lower()

    token = mailbox.last_token()
    page = client.get(f"/verify/{token}")
    assert page.status_code == 200
    assert "Confirm my signature" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert counts(db)["verified"] == 0
    # Reloading the link page (or a scanner fetching it twice) still confirms nothing.
    client.get(f"/verify/{token}")
    assert counts(db)["verified"] == 0

    done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(page.text)})
    assert done.status_code == 200
    assert "your signature is verified" in done.text
    assert "<strong>1</strong> verified signature." in done.text
    assert assert_consistent(db)["named"] == 1

    assert 'class="receipt-code"' in done.text
    assert 'value="http://testserver/letters/test-letter"' in done.text  # to pass it on

    # Reloading the confirmed page (a second POST) in this browser says it is counted.
    reloaded = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(page.text)})
    assert reloaded.status_code == 200
    assert "Your signature is counted" in reloaded.text
    assert "receipt-code" not in reloaded.text  # shown once, never stored
    assert client.get(f"/verify/{token}").status_code == 200

    # Anywhere else, pressing the button again or reopening the link says it was used,
    # and no more: whoever opens an old link in that mailbox does not learn which letter.
    client.cookies.delete("confirmed")
    again = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(page.text)})
    reopened = client.get(f"/verify/{token}")
    for response in (again, reopened):
        assert response.status_code == 400
        assert "already been used" in response.text
        assert "Test letter" not in response.text
    assert counts(db)["verified"] == 1

    letter_page = client.get("/letters/test-letter").text
    assert "Ada Lovelace" in letter_page
    assert "Principal Engineer" in letter_page
    assert "<td>Microsoft</td><td>1</td>" in letter_page


def test_hidden_names_never_reach_the_public_pages(client, letter, mailbox, db):
    sign_api(client, "quiet@github.com", name="Quentin Quietname", title="Secret Team")
    confirm_api(client, mailbox.last_token())
    sign_api(client, "loud@github.com", name="Lou Loudname", show_name=True)
    confirm_api(client, mailbox.last_token("loud@github.com"))
    assert assert_consistent(db)["hidden"] == 1
    pages = [
        client.get("/").text,
        client.get("/letters/test-letter").text,
        client.get("/letters/test-letter/signatures").text,
        client.get("/api/letters").text,
        client.get("/api/letters/test-letter").text,
        client.get("/api/letters/test-letter/signatures").text,
    ]
    for text in pages:
        assert "Quentin" not in text
        assert "Secret Team" not in text
        assert "quiet@" not in text
    assert "Lou Loudname" in pages[1]
    assert "and 1 more verified employee who chose not to show their name." in pages[1]


def test_form_errors_are_shown_next_to_the_field_and_keep_the_input(client, letter, mailbox, db):
    response = sign_form(client, email="ada@gmail.com", name="Ada")
    assert response.status_code == 422
    assert 'role="alert"' in response.text
    assert 'id="email-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert "Only work addresses at" in response.text
    assert 'value="ada@gmail.com"' in response.text
    assert 'value="Ada"' in response.text
    assert mailbox.messages == []
    assert counts(db)["verified"] == 0


def test_posts_without_a_valid_csrf_token_are_refused(client, letter, mailbox):
    client.get("/letters/test-letter")
    for token in [None, "", "forged", letter_csrf(client) + "x"]:
        data = {"email": "a@microsoft.com"}
        if token is not None:
            data["csrftoken"] = token
        response = client.post("/letters/test-letter/sign", data=data)
        assert response.status_code == 403
        # The form again, filled in, with a token to send it once more.
        assert "send it again" in response.text
        assert 'href="#sign-heading"' in response.text
        assert 'value="a@microsoft.com"' in response.text
        assert csrf_from(response.text)
    # A token from one browser does not work with another browser's cookie.
    stolen = letter_csrf(client)
    client.cookies.clear()
    client.cookies.set("csrftoken", "another-browser-cookie-value-0123")
    response = client.post(
        "/letters/test-letter/sign", data={"email": "a@microsoft.com", "csrftoken": stolen}
    )
    assert response.status_code == 403
    assert mailbox.messages == []


SIGNING = {"email": "a@microsoft.com", "show_name": "0"}


def test_a_form_from_another_site_is_refused_even_with_a_valid_token(client, letter, mailbox):
    token = letter_csrf(client)
    for site in ["cross-site", "same-site", "none"]:
        response = client.post(
            "/letters/test-letter/sign",
            data={**SIGNING, "csrftoken": token},
            headers={"Sec-Fetch-Site": site},
        )
        assert response.status_code == 403
        assert "expired" in response.text  # no form to send again: it was not ours
    assert mailbox.messages == []


def test_a_form_from_this_site_needs_no_token(client, letter, mailbox):
    page = client.get("/letters/test-letter")
    assert "csrftoken" not in page.text
    response = client.post(
        "/letters/test-letter/sign",
        data=SIGNING,
        headers={"Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    mailbox.wait_for(1)
    assert len(mailbox.messages) == 1


def test_without_sec_fetch_site_a_form_needs_a_token(client, letter, mailbox):
    response = client.post("/letters/test-letter/sign", data=SIGNING, follow_redirects=False)
    assert response.status_code == 403
    token = csrf_from(response.text)
    response = client.post(
        "/letters/test-letter/sign",
        data={**SIGNING, "csrftoken": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    mailbox.wait_for(1)
    assert len(mailbox.messages) == 1


def test_the_manage_form_of_the_letter_page_follows_the_same_rules(client, letter, mailbox):
    url = "/letters/test-letter/manage"
    data = {"email": "a@microsoft.com"}
    refused = client.post(url, data=data, headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    again = client.post(url, data=data)
    assert again.status_code == 403
    assert 'value="a@microsoft.com"' in again.text
    token = csrf_from(again.text)
    sent = client.post(url, data={**data, "csrftoken": token}, follow_redirects=False)
    assert sent.status_code == 303
    ours = client.post(url, data=data, headers={"Sec-Fetch-Site": "same-origin"})
    assert ours.status_code == 200  # followed to the page saying a link may be on its way


def test_the_letter_page_is_the_same_for_every_reader(client, letter):
    english = client.get("/en/letters/test-letter")
    assert english.status_code == 200
    assert "set-cookie" not in english.headers
    assert english.headers["cache-control"] == "public, max-age=1"
    assert english.headers.get("vary", "Accept-Encoding") == "Accept-Encoding"  # gzip only
    assert english.headers["content-language"] == "en"
    others = [client.get("/en/letters/test-letter", headers={"Accept-Language": "es"})]
    client.cookies.set("lang", "es")
    client.cookies.set("csrftoken", "x" * 32)
    others.append(client.get("/en/letters/test-letter"))
    for other in others:
        assert other.content == english.content
        assert other.headers["etag"] == english.headers["etag"]
    spanish = client.get("/es/letters/test-letter")
    assert spanish.headers["content-language"] == "es"
    assert "Firmar esta carta" in spanish.text


def test_the_shared_address_redirects_to_the_readers_language(client, letter):
    cases = [
        ({}, {}, "/en/letters/test-letter"),
        ({"Accept-Language": "es-ES,es;q=0.9"}, {}, "/es/letters/test-letter"),
        ({"Accept-Language": "es"}, {"lang": "en"}, "/en/letters/test-letter"),
    ]
    for headers, cookies, target in cases:
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value)
        response = client.get("/letters/test-letter", headers=headers, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == target
        assert response.headers["vary"] == "Accept-Language, Cookie"
        assert "set-cookie" not in response.headers
    client.cookies.clear()
    query = client.get("/letters/test-letter?utm=x", follow_redirects=False)
    assert query.headers["location"] == "/en/letters/test-letter?utm=x"
    assert client.get("/fr/letters/test-letter").status_code == 404
    assert client.get("/en/letters/no-such-letter").status_code == 404


def test_confirm_button_needs_csrf(client, letter, mailbox, db):
    sign_api(client, "b@microsoft.com")
    token = mailbox.last_token()
    response = client.post(f"/verify/{token}", data={})
    assert response.status_code == 403
    assert counts(db)["verified"] == 0


def test_bad_links_get_a_clear_page(client, letter):
    response = client.get("/verify/not-a-token")
    assert response.status_code == 400
    assert "This link is not valid." in response.text


def test_a_closed_letter_shows_its_counts_but_no_form(client, engine, letter, mailbox, db):
    from tests.conftest import make_letter

    sign_api(client, "x@microsoft.com")
    confirm_api(client, mailbox.last_token())
    make_letter(engine, "test-letter", status="closed")
    page = client.get("/letters/test-letter").text
    assert "This letter has closed" in page
    assert "<form" not in page
    assert "<strong>1</strong>" in page


def test_names_are_paged(client, letter, engine, db):
    from letters.models import Signature, utcnow

    for number in range(250):
        db.add(
            Signature(
                letter_id=letter.id,
                email_hash=f"{number:064x}",
                commitment=f"{number:064x}",
                domain="microsoft.com",
                organization="Microsoft",
                name=f"Person {number:03d}",
                show_name=True,
                verified_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    db.commit()
    first = client.get("/letters/test-letter/signatures")
    assert "Person 000" in first.text and "Person 199" in first.text
    assert "Person 200" not in first.text
    import re

    after = re.search(r'\?after=([^"]+)"', first.text).group(1)
    second = client.get(f"/letters/test-letter/signatures?after={after}")
    assert "Person 200" in second.text and "Person 249" in second.text
    assert "More names" not in second.text
    assert client.get("/letters/test-letter/signatures?after=forged").status_code == 400


def test_unknown_pages_are_404_html(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]


def test_a_link_to_a_closed_letter_says_so_on_opening(client, engine, letter, mailbox, db):
    from tests.conftest import make_letter

    sign_api(client, "late@microsoft.com")
    token = mailbox.last_token()
    make_letter(engine, "test-letter", status="closed")
    page = client.get(f"/verify/{token}")
    assert page.status_code == 409
    assert "closed" in page.text
    assert "<form" not in page.text


def test_head_and_other_methods_on_a_link_never_confirm(client, letter, mailbox, db):
    sign_api(client, "scanned@microsoft.com", name="Forged Name", show_name=True)
    token = mailbox.last_token()
    assert client.head(f"/verify/{token}").status_code == 200
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        assert client.request(method, f"/verify/{token}").status_code == 405
    assert counts(db)["verified"] == 0
    # The link still works for the person it was sent to.
    page = client.get(f"/verify/{token}")
    assert "Confirm my signature" in page.text


def test_link_previews_carry_the_title_and_the_current_count(client, letter, mailbox):
    sign_api(client, "p@microsoft.com")
    confirm_api(client, mailbox.last_token())
    page = client.get("/letters/test-letter").text
    assert '<meta property="og:title" content="Test letter">' in page
    assert (
        '<meta property="og:description" content="1 verified signature. We ask for better things.">'
    ) in page
    assert '<meta property="og:url" content="http://testserver/letters/test-letter">' in page
    assert '<meta name="twitter:card" content="summary_large_image">' in page


def test_the_letter_page_shows_signatures_per_version_the_goal_and_the_closing_date(
    client, letter, mailbox, db
):
    from datetime import UTC, datetime

    from letters.models import Letter, utcnow

    sign_api(client, "first@github.com")
    confirm_api(client, mailbox.last_token())
    row = db.get(Letter, letter.id)
    row.version, row.goal = 2, 8
    row.closes_at = datetime(2031, 7, 1, tzinfo=UTC)  # the author chose 30 June 2031
    row.updated_at = utcnow()
    db.add(row)
    db.commit()
    sign_api(client, "second@github.com")
    confirm_api(client, mailbox.last_token())
    sign_api(client, "third@microsoft.com")
    confirm_api(client, mailbox.last_token())
    page = client.get("/letters/test-letter").text
    assert "Signatures on this version: 2; on earlier versions: 1." in page
    assert "The authors' goal: 8 signatures (37 % reached)." in page
    # The day the author chose, as the author's page has it (not the next midnight).
    assert "Signatures close at the end of 30 June 2031 (UTC)." in page
    spanish = client.get("/letters/test-letter", headers={"Accept-Language": "es"}).text
    assert "Firmas en esta versión: 2; en versiones anteriores: 1." in spanish
