"""Malformed requests: a clear 4xx with a message, nothing written, and never a 500.

Property-based (hypothesis) over every endpoint that takes input. The fixtures are
function-scoped, so one database serves all the examples of a test: each example compares
the counters, the pending rows and the mailbox before and after its own request.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import idna
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from letters.models import PendingSignature
from letters.tokens import Signer
from tests.conftest import SECRET
from tests.helpers import counts, csrf_from, letter_csrf, names_of, pending_count, sign_api

SIGN_URL = "/api/letters/test-letter/signatures"
FORM_URL = "/letters/test-letter/sign"
JSON = {"content-type": "application/json"}
API_JSON_LIMIT = 16 * 1024  # the JSON API reads at most this much (letters.web.api)
FORM = {"content-type": "application/x-www-form-urlencoded"}

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,  # no saved examples: every run explores afresh (explicit @example pins bugs)
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
FEW = settings(FUZZ, max_examples=50)
SMALL = settings(FUZZ, max_examples=20)

UNIQUE = itertools.count()


def fresh_address(domain: str = "microsoft.com") -> str:
    """An address no other example used, so the per-address rate limit never interferes."""
    return f"signer{next(UNIQUE)}@{domain}"


# --- oracles ----------------------------------------------------------------------------


def domain_is_allowed(domain: str) -> bool:
    """The test letter's rules, written out independently of letters.domains."""
    return domain in ("microsoft.com", "github.com", "corp.example") or domain.endswith(
        ".corp.example"
    )


def snapshot(db: Any, mailbox: Any) -> tuple[Any, int, int]:
    return counts(db), pending_count(db), len(mailbox.messages)


def assert_unchanged(db: Any, mailbox: Any, before: tuple[Any, int, int]) -> None:
    assert snapshot(db, mailbox) == before, "a refused request changed something"


def assert_json_error(response: Any, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of `statuses` when given) with {"error": {"code", "message", "field"}}."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert error["field"] is None or isinstance(error["field"], str), error
    return error


def assert_html_error(response: Any, *statuses: int) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(("text/html", "text/plain"))
    assert response.text.strip()


def assert_signing_accepted(db: Any, mailbox: Any, before: tuple[Any, int, int]) -> None:
    """A 202/303: one more pending row, one email to an allowed domain, no count yet."""
    before_counts, before_pending, before_mail = before
    mailbox.wait_for(before_mail + 1)
    assert len(mailbox.messages) == before_mail + 1
    recipient = mailbox.envelopes[-1][1][0]
    assert domain_is_allowed(recipient.rsplit("@", 1)[1]), recipient
    assert pending_count(db) == before_pending + 1
    assert counts(db) == before_counts  # pending never counts
    latest = db.exec(select(PendingSignature).order_by(col(PendingSignature.id).desc())).first()
    assert latest is not None and domain_is_allowed(latest.domain)
    for text in names_of(latest):
        assert all(ch == " " or ch.isprintable() or ch in "\u200c\u200d" for ch in text), text


def idna_domain(email: str) -> str | None:
    """The ASCII domain of a typed address, or None when it has none."""
    if "@" not in email:
        return None
    try:
        return idna.encode(email.rsplit("@", 1)[1].strip(), uts46=True).decode().lower()
    except (idna.IDNAError, UnicodeError):
        return None


def path_segment(text: str) -> str:
    """A path segment the app receives as exactly `text` (its path parameter).

    Every byte is percent-encoded so the client, not the app, sees nothing special (dot
    segments included); then encoded again because Starlette's TestClient decodes the path
    twice (httpx's `URL.path`, then `unquote`), where a real server decodes it once.
    """
    once = quote(text, safe="")
    if once in (".", ".."):  # the client would resolve dot segments itself
        once = once.replace(".", "%2E")
    return quote(once, safe="")


# --- strategies -------------------------------------------------------------------------

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]
# Python counts \t \n \x0b \x0c \r \x1c-\x1f and \x85 as whitespace: they collapse to a space.
NON_SPACE_CONTROLS = [c for c in CONTROLS if not c.isspace()]
SPACE_CONTROLS = [c for c in CONTROLS if c.isspace()]
BIDI = list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
INVISIBLE = [*NON_SPACE_CONTROLS, *BIDI, "\u200b", "\ufeff", "\u2060", "\U000e0001"]
SPECIAL = [*CONTROLS, *BIDI, "\u200b", "\u200c", "\u200d", "\ufeff", "\ufffe", "\uffff"]
SPECIAL += ["\u2028", "\u2029", "\xa0", "\U0010ffff", "\U000e0001", "\u0301", "\ue000"]

nasty_char = st.characters() | st.sampled_from(SPECIAL)
huge_text = st.builds(lambda c, n: c * n, nasty_char, st.integers(100, 20_000))
nasty_text = st.one_of(st.text(max_size=40), st.text(nasty_char, max_size=40), huge_text)
# JSON can carry lone surrogates ("\ud800"), a form body cannot.
json_text = nasty_text | st.sampled_from(["\ud800", "a\udfffb", "\udc80@microsoft.com"])
# Forms, paths and query strings are UTF-8: no lone surrogates there.
form_char = st.characters(codec="utf-8") | st.sampled_from(SPECIAL)
form_text = st.one_of(
    st.text(max_size=40),
    st.text(form_char, max_size=40),
    st.builds(lambda c, n: c * n, form_char, st.integers(100, 5_000)),
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: Python's json reads them
    json_text,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)

DOMAINS = [
    "microsoft.com",
    "MICROSOFT.COM",
    "github.com",
    "corp.example",
    "eu.corp.example",
    "a.b.corp.example",
    "evil.com",
    "microsoft.com.evil.com",
    "notcorp.example",
    "corp.example.org",
    "micr\u043esoft.com",  # Cyrillic o
    "m\u0456crosoft.com",  # Cyrillic i
    "\uff4d\uff49\uff43\uff52\uff4f\uff53\uff4f\uff46\uff54.com",  # fullwidth microsoft
    "github.co",
    "github.com.",
    "githu\u0431.com",
    "[127.0.0.1]",
    "localhost",
    "",
    "-corp.example",
    "corp..example",
]
local_part = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,20}", fullmatch=True)
crafted_email = st.builds(
    lambda local, domain: f"{local}@{domain}", local_part, st.sampled_from(DOMAINS)
)
tricky_email = st.sampled_from(
    [
        "a@microsoft.com@evil.com",
        '"a@microsoft.com"@evil.com',
        "Ada <a@microsoft.com>",
        "a@microsoft.com\n",
        "a@microsoft.com\x00",
        "a\x00@microsoft.com",
        "a@microsoft.com\u202e",
        " @microsoft.com",
        "@microsoft.com",
        "a@",
        "a" * 300 + "@microsoft.com",
        "x@" + "a" * 64 + ".corp.example",
        "é@microsoft.com",
        "a@[IPv6:::1]",
    ]
)
email_value = st.one_of(crafted_email, tricky_email, st.emails(), json_value)
form_email = st.one_of(crafted_email, tricky_email, st.emails(), form_text)

show_name_value = st.one_of(
    st.sampled_from([True, False, "1", "0", "true", "yes", "on", "off", "", "TRUE", "maybe", "2"]),
    json_value,
)
extra_keys = st.dictionaries(st.text(max_size=12), json_value, max_size=3)
sign_body = st.builds(
    lambda extra, fields: {**extra, **fields},
    extra_keys,
    st.fixed_dictionaries(
        {},
        optional={
            "name": json_value | st.text(max_size=30),
            "email": email_value,
            "title": json_value | st.text(max_size=30),
            "show_name": show_name_value,
        },
    ),
)
non_object = json_value.filter(lambda value: not isinstance(value, dict))

WRONG_TYPES = [
    "",
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json-patch+json",
    "application/jsonx",
    "application/ld+json",
    "application/xml",
    "json",
    "application/json, text/plain",
]
content_type = st.sampled_from(WRONG_TYPES) | st.from_regex(r"[ -~]{0,40}", fullmatch=True)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: lone surrogates travel as \ud800


def is_json_type(header: str) -> bool:
    return header.split(";")[0].strip().lower() == "application/json"


# --- POST /api/letters/{slug}/signatures --------------------------------------------------


@FUZZ
@given(body=sign_body)
def test_sign_api_refuses_bad_fields_cleanly(client, letter, mailbox, db, body):
    before = snapshot(db, mailbox)
    response = client.post(SIGN_URL, content=dumps(body), headers=JSON)
    if response.status_code == 202:
        assert response.json() == {"status": "check_your_email"}
        email = body.get("email")
        assert isinstance(email, str)
        assert domain_is_allowed(idna_domain(email) or ""), email
        assert_signing_accepted(db, mailbox, before)
        return
    error = assert_json_error(response, 413, 422, 429)
    if response.status_code == 422:
        assert error["field"] in ("name", "title", "email", "show_name"), error
    assert_unchanged(db, mailbox, before)


@FUZZ
@given(email=st.one_of(crafted_email, tricky_email, st.emails()))
def test_only_allowed_domains_get_a_link(client, letter, mailbox, db, email):
    before = snapshot(db, mailbox)
    response = sign_api(client, email)
    domain = idna_domain(email) or ""
    if response.status_code == 202:
        assert domain_is_allowed(domain), email
        assert_signing_accepted(db, mailbox, before)
        return
    error = assert_json_error(response, 422, 429)
    if response.status_code == 422:
        assert error["field"] == "email"
    if not domain_is_allowed(domain):
        assert response.status_code == 422
    assert_unchanged(db, mailbox, before)


@FEW
@given(value=non_object)
def test_sign_api_refuses_json_that_is_not_an_object(client, letter, mailbox, db, value):
    before = snapshot(db, mailbox)
    response = client.post(SIGN_URL, content=dumps(value), headers=JSON)
    error = assert_json_error(response, 400, 413)
    if response.status_code == 400:
        assert error["code"] == "invalid_json"
    assert_unchanged(db, mailbox, before)


INVALID_JSON = [
    b"",
    b"{",
    b'{"email": "a@microsoft.com"',
    b'{"email": "a@microsoft.com",}',
    b"{'email': 'a@microsoft.com'}",
    b'{"email": "a\xff@microsoft.com"}',
    b"\xff\xfe\x00",
    b"\x00" * 10,
]
# Built from a size, so hypothesis never has to print a 30 kB example.
huge_json = st.one_of(
    # more digits than Python converts to an int
    st.builds(lambda n: b'{"a": 1' + b"0" * n + b"}", st.integers(4300, 6000)),
    # Nested deeper than the JSON parser recurses, even with the recursion limit that
    # hypothesis raises (to about 2,000 above the current depth) while a test runs.
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(5000, 8000)),
    st.builds(lambda n: b'{"a": ' + b"[" * n + b"]" * n + b"}", st.integers(5000, 8000)),
)
invalid_json = st.sampled_from(INVALID_JSON) | huge_json | st.binary(max_size=200)


@FUZZ
@given(body=invalid_json)
@example(body=b"[" * 5000 + b"]" * 5000)
def test_sign_api_refuses_invalid_json_bytes(client, letter, mailbox, db, body):
    before = snapshot(db, mailbox)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    response = client.post(SIGN_URL, content=body, headers=JSON)
    if len(body) > API_JSON_LIMIT:
        assert assert_json_error(response, 413)["code"] == "body_too_large"
    elif not isinstance(parsed, dict):
        error = assert_json_error(response, 400)
        assert error["code"] == "invalid_json"
    else:
        assert_json_error(response, 422)
    assert_unchanged(db, mailbox, before)


@FEW
@given(header=content_type)
def test_sign_api_refuses_other_content_types(client, letter, mailbox, db, header):
    before = snapshot(db, mailbox)
    body = dumps({"email": fresh_address(), "name": "Ada"})
    response = client.post(SIGN_URL, content=body, headers={"content-type": header})
    if is_json_type(header):
        assert response.status_code == 202
        return
    error = assert_json_error(response, 415)
    assert error["code"] == "unsupported_media_type"
    assert_unchanged(db, mailbox, before)


def test_sign_api_without_a_content_type_or_a_body(client, letter, mailbox, db):
    before = snapshot(db, mailbox)
    assert_json_error(client.post(SIGN_URL), 415)
    assert_json_error(client.post(SIGN_URL, content=b"", headers=JSON), 400)
    form = {"email": "a@microsoft.com", "name": "Ada"}
    assert_json_error(client.post(SIGN_URL, data=form), 415)
    assert_json_error(client.post(SIGN_URL, files={"email": ("e.txt", b"a@microsoft.com")}), 415)
    assert_unchanged(db, mailbox, before)


# --- names and titles with control or bidi characters ---------------------------------------

plain = st.text(st.characters(categories=["L", "N"]), max_size=20)
with_invisible = st.builds(
    lambda head, bad, tail: head + bad + tail, plain, st.sampled_from(INVISIBLE), plain
)


@FUZZ
@given(name=with_invisible, show_name=st.booleans())
def test_names_with_control_or_bidi_characters_are_refused(
    client, letter, mailbox, db, name, show_name
):
    before = snapshot(db, mailbox)
    response = sign_api(client, fresh_address(), name=name, show_name=show_name)
    error = assert_json_error(response, 422)
    assert error["field"] == "name"
    assert_unchanged(db, mailbox, before)


@FEW
@given(title=with_invisible)
def test_titles_with_control_or_bidi_characters_are_refused(client, letter, mailbox, db, title):
    before = snapshot(db, mailbox)
    response = sign_api(client, fresh_address(), name="Ada", show_name=True, title=title)
    error = assert_json_error(response, 422)
    assert error["field"] == "title"
    assert_unchanged(db, mailbox, before)


@SMALL
@given(first=plain.filter(str.strip), gap=st.sampled_from(SPACE_CONTROLS), last=plain)
def test_whitespace_controls_in_names_collapse_to_a_space(
    client, letter, mailbox, db, first, gap, last
):
    before = snapshot(db, mailbox)
    response = sign_api(client, fresh_address(), name=f"{gap}{first}{gap}{gap}{last}{gap}")
    assert response.status_code == 202, response.text
    assert_signing_accepted(db, mailbox, before)
    stored = db.exec(select(PendingSignature).order_by(col(PendingSignature.id).desc())).first()
    assert stored is not None
    assert names_of(stored)[0] == unicodedata.normalize("NFC", " ".join(f"{first} {last}".split()))


# --- POST /api/verify ---------------------------------------------------------------------

token_text = st.one_of(
    st.from_regex(r"[A-Za-z0-9_\-.]{1,300}", fullmatch=True),
    nasty_text,
    st.sampled_from(["", ".", "..", "a.b.c", "eyJwIjoxLCJuIjoieCJ9.AAAA.BBBB", "x" * 1001]),
)
verify_body = st.one_of(
    st.builds(lambda extra, token: {**extra, "token": token}, extra_keys, token_text | json_value),
    extra_keys,
    non_object,
)


@FUZZ
@given(body=verify_body)
def test_verify_api_refuses_arbitrary_tokens(client, letter, mailbox, db, body):
    before = snapshot(db, mailbox)
    response = client.post("/api/verify", content=dumps(body), headers=JSON)
    error = assert_json_error(response, 400, 413)
    if response.status_code == 400:
        if isinstance(body, dict):
            assert error["code"] in ("invalid_token", "expired_token"), error
            assert error["field"] == "token"
        else:
            assert error["code"] == "invalid_json"
    assert_unchanged(db, mailbox, before)


@FEW
@given(body=invalid_json, header=content_type)
def test_verify_api_refuses_bad_bodies_and_content_types(client, letter, mailbox, db, body, header):
    before = snapshot(db, mailbox)
    response = client.post("/api/verify", content=body, headers={"content-type": header})
    if is_json_type(header) and len(body) > API_JSON_LIMIT:
        assert assert_json_error(response, 413)["code"] == "body_too_large"
    elif is_json_type(header):
        error = assert_json_error(response, 400)
        assert error["code"] in ("invalid_json", "invalid_token")
    else:
        error = assert_json_error(response, 415)
        assert error["code"] == "unsupported_media_type"
    assert_unchanged(db, mailbox, before)


URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def tamper(token: str, data: st.DataObject) -> str:
    position = data.draw(st.integers(0, len(token)))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap-case"]))
    char = data.draw(st.sampled_from(URLSAFE))
    if kind == "replace" and position < len(token):
        return token[:position] + char + token[position + 1 :]
    if kind == "insert":
        return token[:position] + char + token[position:]
    if kind == "delete" and position < len(token):
        return token[:position] + token[position + 1 :]
    if kind == "truncate":
        return token[:position]
    return token.swapcase()


def test_tampered_links_never_count_more_than_the_one_signer(client, letter, mailbox, db):
    assert sign_api(client, "tamper@microsoft.com").status_code == 202
    token = mailbox.last_token()

    @FUZZ
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        forged = tamper(token, data)
        before = snapshot(db, mailbox)
        response = client.post("/api/verify", json={"token": forged})
        if response.status_code == 200:
            # A change base64 cannot see (the unused low bits of the last character)
            # still verifies the same one signature; nothing else may.
            assert response.json()["status"] == "verified"
            assert counts(db)["verified"] == 1
            return
        error = assert_json_error(response, 400)
        assert error["code"] == "invalid_token"
        assert_unchanged(db, mailbox, before)

    check()
    c = counts(db)
    assert c["verified"] <= 1 and c["rows"] == c["verified"]


# --- /verify/{token} (the HTML page a link opens) -------------------------------------------

segment = st.one_of(
    st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s),
    st.text(form_char, min_size=1, max_size=60).filter(lambda s: "/" not in s),
    st.sampled_from(["..", ".", "%2e%2e", "%00", "\x00", "a" * 5000, "\u202e", "~", "?x=1"]),
    st.from_regex(r"[A-Za-z0-9_\-.]{1,300}", fullmatch=True),
)


@FUZZ
@given(token=segment)
def test_verify_page_refuses_arbitrary_links(client, letter, mailbox, db, token):
    before = snapshot(db, mailbox)
    response = client.get(f"/verify/{path_segment(token)}")
    assert_html_error(response, 400)
    assert "This link cannot be used" in response.text
    assert_unchanged(db, mailbox, before)


@FEW
@given(
    token=segment,
    form=st.dictionaries(st.text(max_size=10).filter(lambda k: k != "csrftoken"), form_text),
)
def test_verify_page_post_without_csrf_is_refused(client, letter, mailbox, db, token, form):
    before = snapshot(db, mailbox)
    response = client.post(f"/verify/{path_segment(token)}", data=form)
    assert_html_error(response, 403, 400, 413)
    assert_unchanged(db, mailbox, before)


def test_a_real_link_posted_without_csrf_confirms_nothing(client, letter, mailbox, db):
    assert sign_api(client, "csrf@microsoft.com").status_code == 202
    token = mailbox.last_token()
    before = snapshot(db, mailbox)
    page = client.get(f"/verify/{token}")
    assert page.status_code == 200
    good = csrf_from(page.text)
    attempts: list[dict[str, Any]] = [
        {},
        {"csrftoken": ""},
        {"csrftoken": "x"},
        {"csrftoken": good + "x"},
        {"csrftoken": Signer("another-secret-key-000000000000000000").untimed("csrf").dumps("a")},
        {"csrftoken": Signer(SECRET).untimed("csrf").dumps("not-this-browsers-cookie-00")},
    ]
    for form in attempts:
        response = client.post(f"/verify/{token}", data=form)
        assert_html_error(response, 403)
    # The right token with another browser's cookie is refused too.
    client.cookies.clear()
    client.cookies.set("csrftoken", "someone-elses-cookie-value-0123")
    assert_html_error(client.post(f"/verify/{token}", data={"csrftoken": good}), 403)
    assert_unchanged(db, mailbox, before)
    assert db.exec(select(PendingSignature)).one().used_at is None
    # Control: with this browser's own token the same link confirms.
    client.cookies.clear()
    fresh = csrf_from(client.get(f"/verify/{token}").text)
    assert client.post(f"/verify/{token}", data={"csrftoken": fresh}).status_code == 200
    assert counts(db)["verified"] == 1


# --- the HTML signing form ----------------------------------------------------------------


def form_fields_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.builds(
        lambda extra, fields: {**extra, **fields},
        st.dictionaries(st.text(max_size=10).filter(lambda k: k != "csrftoken"), text, max_size=4),
        st.fixed_dictionaries(
            {},
            optional={
                "name": text,
                "email": form_email,
                "title": text,
                "show_name": st.sampled_from(["0", "1", "on", "true", "", "maybe"]) | text,
            },
        ),
    )


form_fields = form_fields_of(form_text)
# Small enough for the form parser (16 KiB a field), so only the CSRF check can refuse them.
readable_form_fields = form_fields_of(st.text(form_char, max_size=200))


def test_html_sign_with_arbitrary_fields(client, letter, mailbox, db):
    token = letter_csrf(client)

    @FUZZ
    @given(fields=form_fields)
    def check(fields: dict[str, str]) -> None:
        before = snapshot(db, mailbox)
        response = client.post(
            FORM_URL, data={**fields, "csrftoken": token}, follow_redirects=False
        )
        if response.status_code == 303:
            assert response.headers["location"].endswith("/letters/test-letter/check-email")
            assert domain_is_allowed(idna_domain(fields.get("email", "")) or "")
            assert_signing_accepted(db, mailbox, before)
            return
        assert_html_error(response, 400, 413, 422, 429)
        if response.status_code == 422:
            assert 'role="alert"' in response.text  # the message sits next to the field
        assert_unchanged(db, mailbox, before)

    check()


def test_html_sign_with_arbitrary_bodies(client, letter, mailbox, db):
    token = letter_csrf(client)

    @FEW
    @given(
        body=st.binary(max_size=300), header=st.sampled_from([*WRONG_TYPES, FORM["content-type"]])
    )
    def check(body: bytes, header: str) -> None:
        before = snapshot(db, mailbox)
        content = f"csrftoken={token}&".encode() + body
        response = client.post(
            FORM_URL, content=content, headers={"content-type": header}, follow_redirects=False
        )
        if response.status_code == 303:
            assert_signing_accepted(db, mailbox, before)
            return
        assert_html_error(response)
        assert_unchanged(db, mailbox, before)

    check()


@FEW
@given(
    fields=readable_form_fields,
    csrf=st.one_of(
        st.none(),
        st.text(form_char, max_size=200),
        st.from_regex(r"[A-Za-z0-9_\-.]{10,80}", fullmatch=True),
        st.just(Signer("another-secret-key-000000000000000000").untimed("csrf").dumps("a" * 24)),
        st.just(Signer(SECRET).untimed("csrf").dumps("not-this-browsers-cookie-00")),
    ),
)
def test_html_sign_without_a_valid_csrf_token_is_refused(client, letter, mailbox, db, fields, csrf):
    letter_csrf(client)  # the browser has its CSRF cookie
    before = snapshot(db, mailbox)
    data = {**fields, "email": fresh_address(), "name": "Ada", "show_name": "1"}
    if csrf is not None:
        data["csrftoken"] = csrf
    response = client.post(FORM_URL, data=data, follow_redirects=False)
    assert_html_error(response, 403)
    assert "send it again" in response.text  # the form again, to send with its token
    assert_unchanged(db, mailbox, before)


def test_html_sign_with_a_token_but_without_its_cookie_is_refused(client, letter, mailbox, db):
    token = letter_csrf(client)
    before = snapshot(db, mailbox)
    data = {"csrftoken": token, "email": fresh_address(), "name": "Ada"}
    client.cookies.clear()
    assert_html_error(client.post(FORM_URL, data=data, follow_redirects=False), 403)
    client.cookies.set("csrftoken", "another-browsers-cookie-value-0")
    assert_html_error(client.post(FORM_URL, data=data, follow_redirects=False), 403)
    assert_unchanged(db, mailbox, before)
    # Control: the page's own token with its own cookie is accepted.
    client.cookies.clear()
    data["csrftoken"] = letter_csrf(client)
    assert client.post(FORM_URL, data=data, follow_redirects=False).status_code == 303
    assert_signing_accepted(db, mailbox, before)


@FEW
@given(name=with_invisible)
def test_html_names_with_control_or_bidi_characters_are_refused(client, letter, mailbox, db, name):
    token = letter_csrf(client)
    before = snapshot(db, mailbox)
    data = {"csrftoken": token, "email": fresh_address(), "name": name, "show_name": "1"}
    response = client.post(FORM_URL, data=data, follow_redirects=False)
    assert_html_error(response, 422)
    assert 'id="name-error"' in response.text
    assert_unchanged(db, mailbox, before)


# --- GET /api/letters/{slug}/signatures?limit=&after= --------------------------------------

query_text = st.one_of(
    st.text(max_size=30),
    st.text(form_char, max_size=30),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(0, 600).map(str),
    st.sampled_from(["²", "³", "①", "١٢", "߁", "٣٠٠", "1.5", "1e2", " 5", "5 ", "+5", "0x10"]),
)
cursor_text = st.one_of(
    st.none(),
    query_text,
    st.from_regex(r"[A-Za-z0-9_\-.]{1,120}", fullmatch=True),
    st.sampled_from(
        [
            Signer(SECRET).untimed("cursor").dumps("1"),  # right key, not an int
            Signer(SECRET).untimed("cursor").dumps(True),
            Signer(SECRET).untimed("cursor").dumps([1]),
            Signer(SECRET).untimed("cursor").dumps(1.5),
            Signer(SECRET).untimed("csrf").dumps(1),  # another purpose
            Signer("another-secret-key-000000000000000000").dumps_cursor(1),
        ]
    ),
)
valid_cursor = st.integers(0, 10**6).map(Signer(SECRET).dumps_cursor)


@FUZZ
@given(limit=st.none() | query_text, after=cursor_text | valid_cursor)
@example(limit="\u00b2", after=None)  # "²".isdigit() is True, int("²") fails
def test_signature_pages_refuse_bad_limits_and_cursors(client, letter, limit, after):
    params = {
        key: value for key, value in (("limit", limit), ("after", after)) if value is not None
    }
    response = client.get(SIGN_URL, params=params)
    limit_ok = limit is None or (limit.isascii() and limit.isdecimal() and 1 <= int(limit) <= 500)
    cursor_ok = not after or is_valid_cursor(after)
    if response.status_code == 200:
        assert limit is None or 1 <= int(limit) <= 500
        assert cursor_ok
        assert set(response.json()) == {"signatures", "next"}
        return
    error = assert_json_error(response, 400)
    assert error["field"] in ("limit", "after")
    if error["field"] == "limit":
        assert not limit_ok, limit
    else:
        assert error["code"] == "invalid_cursor" and not cursor_ok, after


def is_valid_cursor(text: str) -> bool:
    try:
        Signer(SECRET).loads_cursor(text)
    except ValueError:
        return False
    return True


@FEW
@given(after=cursor_text)
def test_signatures_html_page_refuses_bad_cursors(client, letter, after):
    response = client.get("/letters/test-letter/signatures", params={"after": after})
    if response.status_code == 200:
        assert not after or is_valid_cursor(after)
        return
    assert_html_error(response, 400)
    assert "That page link is not valid." in response.text


# --- arbitrary slugs ----------------------------------------------------------------------

slug = st.one_of(
    st.text(min_size=1, max_size=60),
    st.text(form_char, min_size=1, max_size=60),
    st.sampled_from(
        [
            "..",
            ".",
            "%2e%2e",
            "%2E%2E%2F",
            "..%2f..%2fetc%2fpasswd",
            "test-letter\x00",
            "\x00",
            "test-letter%00",
            "Test-Letter",
            "test-letter ",
            " test-letter",
            "test\u2010letter",  # a Unicode hyphen
            "t\u0435st-letter",  # Cyrillic e
            "test-letter\u202e",
            "x" * 5000,
            "' OR '1'='1",
            "%",
            "~",
        ]
    ),
).filter(lambda s: s != "test-letter" and "/" not in s)


@FEW
@given(slug=slug)
@example(slug="\x00")
@example(slug="test-letter\x00")
def test_unknown_slugs_are_404_everywhere(client, letter, mailbox, db, slug):
    before = snapshot(db, mailbox)
    segment_ = path_segment(slug)
    for path in (f"/letters/{segment_}", f"/letters/{segment_}/signatures"):
        response = client.get(path)
        assert_html_error(response, 404)
        assert "There is nothing at this address." in response.text
    for path in ("check-email", "flyer", "feed.atom", "history"):
        assert_html_error(client.get(f"/letters/{segment_}/{path}"), 404)
    assert client.get(f"/letters/{segment_}/qr.svg").status_code == 404
    for path in (
        f"/api/letters/{segment_}",
        f"/api/letters/{segment_}/signatures",
        f"/api/letters/{segment_}/deliveries",
        f"/api/letters/{segment_}/deliveries/1/snapshot",
    ):
        error = assert_json_error(client.get(path), 404)
        assert error["code"] == "not_found"
    body = {"email": fresh_address(), "name": "Ada"}
    posted = client.post(f"/api/letters/{segment_}/signatures", content=dumps(body), headers=JSON)
    assert assert_json_error(posted, 404)["code"] == "not_found"
    assert_unchanged(db, mailbox, before)


@FEW
@given(seq=st.text(max_size=12))
@example(seq="0")
@example(seq="99999999999999")
@example(seq="-1")
@example(seq="\x00")
def test_a_delivered_snapshot_that_does_not_exist_is_a_clear_404(client, letter, seq):
    response = client.get(f"/api/letters/test-letter/deliveries/{path_segment(seq)}/snapshot")
    assert response.status_code == 404, response.text
    if response.status_code == 404 and response.headers["content-type"] == "application/json":
        assert response.json()["error"]["code"] == "not_found"


@SMALL
@given(slug=slug)
@example(slug="\x00")
def test_unknown_slugs_are_404_for_the_html_form(client, letter, mailbox, db, slug):
    token = letter_csrf(client)
    before = snapshot(db, mailbox)
    data = {"csrftoken": token, "email": fresh_address(), "name": "Ada"}
    response = client.post(f"/letters/{path_segment(slug)}/sign", data=data, follow_redirects=False)
    assert_html_error(response, 404)
    assert_unchanged(db, mailbox, before)


@SMALL
@given(parts=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=4))
def test_slugs_with_encoded_slashes_never_fail(client, letter, mailbox, db, parts):
    before = snapshot(db, mailbox)
    joined = "%2F".join(path_segment(part) for part in parts)
    for path in (f"/letters/{joined}", f"/api/letters/{joined}"):
        response = client.get(path, follow_redirects=False)
        # Other routes may match ("x/signatures", "x/sign" is POST-only, "x/" redirects).
        assert response.status_code in (200, 307, 404, 405), (path, response.status_code)
    assert_unchanged(db, mailbox, before)


# --- oversized bodies ---------------------------------------------------------------------


def chunks(total: int, size: int, prefix: bytes = b"") -> Iterator[bytes]:
    """A body without Content-Length: the client sends it chunked."""
    yield prefix
    sent = 0
    while sent < total:
        yield b"a" * min(size, total - sent)
        sent += size


LIMIT = 64 * 1024


@SMALL
@given(size=st.integers(LIMIT + 1, 4 * LIMIT), path=st.sampled_from([SIGN_URL, "/api/verify"]))
def test_oversized_json_with_content_length_is_413(client, letter, mailbox, db, app, size, path):
    assert app.state.settings.max_body_bytes == LIMIT
    before = snapshot(db, mailbox)
    body = {"email": fresh_address(), "name": "Ada", "token": "x", "pad": "a" * size}
    response = client.post(path, content=dumps(body), headers=JSON)
    assert assert_json_error(response, 413)["code"] == "body_too_large"
    assert_unchanged(db, mailbox, before)


@SMALL
@given(
    size=st.integers(API_JSON_LIMIT + 1, LIMIT - 100),
    path=st.sampled_from([SIGN_URL, "/api/verify"]),
)
def test_json_over_the_api_limit_but_under_the_body_limit_is_413(
    client, letter, mailbox, db, size, path
):
    before = snapshot(db, mailbox)
    body = {"email": fresh_address(), "name": "Ada", "token": "x", "pad": "a" * size}
    response = client.post(path, content=dumps(body), headers=JSON)
    assert assert_json_error(response, 413)["code"] == "body_too_large"
    assert_unchanged(db, mailbox, before)


@SMALL
@given(
    size=st.integers(LIMIT + 1, 3 * LIMIT),
    chunk=st.sampled_from([1024, 8192, 65536]),
    path=st.sampled_from([SIGN_URL, "/api/verify"]),
)
def test_oversized_chunked_json_is_413(client, letter, mailbox, db, size, chunk, path):
    before = snapshot(db, mailbox)
    prefix = f'{{"email": "{fresh_address()}", "token": "x", "pad": "'.encode()
    response = client.post(path, content=chunks(size, chunk, prefix), headers=JSON)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert assert_json_error(response, 413)["code"] == "body_too_large"
    assert_unchanged(db, mailbox, before)


def test_oversized_form_with_content_length_is_413(client, letter, mailbox, db):
    token = letter_csrf(client)
    before = snapshot(db, mailbox)
    data = {"csrftoken": token, "email": fresh_address(), "name": "a" * (LIMIT + 1)}
    response = client.post(FORM_URL, data=data, follow_redirects=False)
    assert_html_error(response, 413)
    assert "too large" in response.text
    assert_unchanged(db, mailbox, before)


def stream_post(
    client: Any, path: str, parts: list[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """POST `parts` as separate ASGI body messages, without Content-Length.

    The TestClient reads a generator whole and hands the app one message; a real server
    passes chunks on as they arrive. This drives the app directly, on the client's event
    loop, so the body limit and the views see a stream. A 500 raises here.
    """
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    raw_headers = [(b"host", b"testserver"), (b"transfer-encoding", b"chunked")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if cookies:
        raw_headers.append((b"cookie", cookies.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    pending = list(parts)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await client.app(scope, receive, send)

    client.portal.call(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, body


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@SMALL
@given(
    size=st.integers(LIMIT + 1, 3 * LIMIT),
    chunk=st.sampled_from([512, 4096, 16384]),
    path=st.sampled_from([SIGN_URL, "/api/verify"]),
)
def test_oversized_streamed_json_is_413(client, letter, mailbox, db, size, chunk, path):
    before = snapshot(db, mailbox)
    body = dumps({"email": fresh_address(), "token": "x", "pad": "a" * size})
    status, headers, content = stream_post(client, path, split(body, chunk), JSON)
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    error = json.loads(content)["error"]
    assert error["code"] == "body_too_large" and error["message"]
    assert_unchanged(db, mailbox, before)


def test_oversized_streamed_form_is_413(client, letter, mailbox, db):
    """The body limit promises 413; the form view must not turn it into another error.

    Every field is under the form parser's own limits (16 KiB a field, 20 fields), so the
    only thing wrong with this body is its total size.
    """
    token = letter_csrf(client)
    before = snapshot(db, mailbox)
    fields = [f"csrftoken={token}", f"email={fresh_address()}", "name=Ada"]
    fields += [f"pad{i}={'a' * 8000}" for i in range(9)]
    body = "&".join(fields).encode()
    assert len(body) > LIMIT
    status, _, content = stream_post(client, FORM_URL, split(body, 4096), FORM)
    assert status == 413, (status, content[-600:])
    assert_unchanged(db, mailbox, before)
    # Control: the same form two fields shorter (under the limit) is accepted.
    fields[1] = f"email={fresh_address()}"
    body = "&".join(fields[:-2]).encode()
    assert len(body) < LIMIT
    status, headers, _ = stream_post(client, FORM_URL, split(body, 4096), FORM)
    assert status == 303 and headers["location"].endswith("/check-email")
    assert_signing_accepted(db, mailbox, before)


@SMALL
@given(size=st.integers(LIMIT + 1, 2 * LIMIT), chunk=st.sampled_from([512, 4096, 16384]))
def test_streamed_forms_to_the_verify_page_are_refused(client, letter, mailbox, db, size, chunk):
    letter_csrf(client)  # the browser has its CSRF cookie
    before = snapshot(db, mailbox)
    body = b"csrftoken=x&pad=" + b"a" * size
    status, _, content = stream_post(client, "/verify/some-token", split(body, chunk), FORM)
    assert status in (400, 403, 413), status
    assert content.strip()
    assert_unchanged(db, mailbox, before)


def test_a_bad_content_length_is_400(client, letter, mailbox, db):
    before = snapshot(db, mailbox)
    request = client.build_request("POST", SIGN_URL, content=b"{}", headers=JSON)
    request.headers["content-length"] = "abc"
    response = client.send(request)
    assert assert_json_error(response, 400)["code"] == "bad_request"
    assert_unchanged(db, mailbox, before)


def test_tokens_with_lone_surrogates_are_invalid_not_500(client, letter, db):
    # JSON can carry "\ud800", which Python decodes to a lone surrogate that cannot be encoded.
    response = client.post(
        "/api/verify",
        content=b'{"token": "abc\\ud800def"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_token"
