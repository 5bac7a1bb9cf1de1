"""The public JSON interface: shapes, ordering, paging."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from letters.models import Signature, utcnow
from tests.helpers import confirm_api, sign_api


def signed(client, mailbox, email, **fields):
    assert sign_api(client, email, **fields).status_code == 202
    assert confirm_api(client, mailbox.last_token(email.lower())).status_code == 200


def test_letters_list(client, engine, letter):
    from tests.conftest import make_letter

    make_letter(engine, "a-draft", status="draft")
    make_letter(engine, "a-closed", status="closed")
    data = client.get("/api/letters").json()
    assert {item["slug"] for item in data["letters"]} == {"test-letter", "a-closed"}
    item = next(i for i in data["letters"] if i["slug"] == "test-letter")
    assert item == {
        "slug": "test-letter",
        "title": "Test letter",
        "status": "published",
        "verified_count": 0,
        "url": "http://testserver/letters/test-letter",
    }


def test_letter_detail(client, letter, mailbox):
    signed(client, mailbox, "a@github.com")
    signed(client, mailbox, "b@microsoft.com", name="B", show_name=True)
    signed(client, mailbox, "c@microsoft.com")
    data = client.get("/api/letters/test-letter").json()
    assert set(data) == {
        "slug",
        "title",
        "status",
        "url",
        "published_at",
        "closed_at",
        "allowed_domains",
        "verified_count",
        "named_count",
        "hidden_count",
        "organizations",
        "updated_at",
        "ledger",
    }
    assert data["ledger"]["length"] == 3 and len(data["ledger"]["head"]) == 64
    assert data["ledger"]["url"] == "http://testserver/api/letters/test-letter/ledger"
    assert data["status"] == "published"
    assert data["allowed_domains"] == ["corp.example", "github.com", "microsoft.com"]
    assert (data["verified_count"], data["named_count"], data["hidden_count"]) == (3, 1, 2)
    assert data["organizations"] == [
        {"name": "Microsoft", "count": 2},
        {"name": "GitHub", "count": 1},
    ]
    assert data["closed_at"] is None
    for moment in (data["published_at"], data["updated_at"]):  # UTC, to the second
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", moment), moment


def test_signatures_are_named_only_and_paged(client, letter, mailbox, db):
    signed(client, mailbox, "hidden@github.com", name="Hidden Person")
    signed(client, mailbox, "shown@github.com", name="Shown Person", title="Dev", show_name=True)
    data = client.get("/api/letters/test-letter/signatures").json()
    assert data["next"] is None
    assert len(data["signatures"]) == 1
    row = data["signatures"][0]
    assert set(row) == {"name", "title", "organization", "signed_at"}
    assert (row["name"], row["title"], row["organization"]) == ("Shown Person", "Dev", "GitHub")
    assert row["signed_at"] == datetime.now(UTC).date().isoformat()  # a day, as the ledger

    for number in range(5):
        db.add(
            Signature(
                letter_id=letter.id,
                email_hash=f"{number:064x}",
                commitment=f"{number:064x}",
                domain="github.com",
                organization="GitHub",
                name=f"P{number}",
                show_name=True,
                verified_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    db.commit()
    names, after = [], None
    while True:
        url = "/api/letters/test-letter/signatures?limit=2" + (f"&after={after}" if after else "")
        page = client.get(url).json()
        names += [row["name"] for row in page["signatures"]]
        after = page["next"]
        if after is None:
            break
    assert names == ["Shown Person", "P0", "P1", "P2", "P3", "P4"]


def test_bad_paging_parameters(client, letter):
    for query in ["limit=0", "limit=501", "limit=abc", "limit=-1", "after=123", "after=abc.def"]:
        response = client.get(f"/api/letters/test-letter/signatures?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["field"] in ("limit", "after")


def test_unknown_and_draft_letters_are_404_json(client, engine):
    from tests.conftest import make_letter

    make_letter(engine, "draft-one", status="draft")
    for path in ["/api/letters/draft-one", "/api/letters/draft-one/signatures", "/api/letters/x"]:
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_the_api_only_takes_json(client, letter, mailbox):
    response = client.post("/api/letters/test-letter/signatures", data={"email": "a@microsoft.com"})
    assert response.status_code == 415
    response = client.post(
        "/api/letters/test-letter/signatures",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert mailbox.messages == []


def test_unknown_api_routes_answer_json(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = client.delete("/api/letters")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_api_route_is_described_in_openapi(client, app):
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/openapi.json"
        for method in route.methods - {"HEAD"}
    }
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert routes == described


def test_answers_match_the_openapi_shapes(client, letter, mailbox):
    spec = client.get("/api/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def check(value, schema):
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        for key in schema.get("required", []):
            assert key in value, key
        for key, sub in schema.get("properties", {}).items():
            if key in value and isinstance(value[key], dict):
                check(value[key], sub)
            if key in value and isinstance(value[key], list) and "items" in sub:
                for item in value[key]:
                    if isinstance(item, dict):
                        check(item, sub["items"])

    sign_api(client, "o@microsoft.com", name="O", show_name=True)
    check(confirm_api(client, mailbox.last_token()).json(), {"$ref": "#/x/Verified"})
    check(client.get("/api/letters").json(), {"$ref": "#/x/Letters"})
    check(client.get("/api/letters/test-letter").json(), {"$ref": "#/x/Letter"})
    check(client.get("/api/letters/test-letter/signatures").json(), {"$ref": "#/x/Signatures"})
    check(client.get("/api/letters/nope").json(), {"$ref": "#/x/Error"})
