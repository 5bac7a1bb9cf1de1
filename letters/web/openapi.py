"""The OpenAPI description of the public JSON interface, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _record(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object schema whose properties are all required."""
    schema: dict[str, Any] = {"type": "object"}
    if description:
        schema["description"] = description
    return schema | {"required": list(properties), "properties": properties}


SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "maxLength": 80},
}
TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": _record(
        {
            "error": _record(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                }
            )
        }
    ),
    "LetterSummary": _record(
        {
            "slug": {"type": "string"},
            "title": {"type": "string"},
            "status": {"enum": ["published", "closed"]},
            "verified_count": {"type": "integer", "minimum": 0},
            "url": {"type": "string", "format": "uri"},
        }
    ),
    "Letters": _record(
        {"letters": {"type": "array", "items": {"$ref": "#/components/schemas/LetterSummary"}}}
    ),
    "Letter": _record(
        {
            "slug": {"type": "string"},
            "title": {"type": "string"},
            "status": {"enum": ["published", "closed"]},
            "url": {"type": "string", "format": "uri"},
            "published_at": TIME,
            "closed_at": TIME,
            "allowed_domains": {"type": "array", "items": {"type": "string"}},
            "verified_count": {"type": "integer", "minimum": 0},
            "named_count": {"type": "integer", "minimum": 0},
            "hidden_count": {"type": "integer", "minimum": 0},
            "organizations": {
                "type": "array",
                "description": "Largest first.",
                "items": _record({"name": {"type": "string"}, "count": {"type": "integer"}}),
            },
            "updated_at": {"type": "string", "format": "date-time"},
            "ledger": _record(
                {
                    "length": {"type": "integer", "minimum": 0},
                    "head": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "url": {"type": "string", "format": "uri"},
                },
                description="The public ledger's length and the hash of its last entry.",
            ),
        },
        description="verified_count == named_count + hidden_count == sum of organizations",
    ),
    "LedgerEntry": {
        "type": "object",
        "description": "One line of the ledger download. `hash` is SHA-256 of the canonical JSON "
        "of format, seq, kind, day, organization, named, name_digest, commitment and prev, "
        "and in format v2 (entries with `v`: 2) also `digest` (see docs/ledger.md). "
        "`commitment` is SHA-256 of 'letters-receipt-v1:' + the signer's receipt ('' for a "
        "`delivered` entry, which names no signature). `name`, `title` and `name_salt` are "
        "null when hidden or removed.",
        "required": [
            "seq",
            "kind",
            "day",
            "organization",
            "named",
            "name",
            "title",
            "name_salt",
            "name_digest",
            "commitment",
            "prev",
            "hash",
        ],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "kind": {"enum": ["signed", "changed", "withdrawn", "invalidated", "delivered"]},
            "day": {"type": "string", "format": "date"},
            "organization": {"type": "string"},
            "named": {"type": "boolean"},
            "name": {"type": ["string", "null"]},
            "title": {"type": ["string", "null"]},
            "name_salt": {"type": ["string", "null"]},
            "name_digest": {"type": "string"},
            "commitment": {"type": "string"},
            "prev": {"type": "string"},
            "hash": {"type": "string"},
            "v": {
                "const": 2,
                "description": "Format v2 only; entries without `v` are format v1.",
            },
            "digest": {
                "type": "string",
                "description": "Format v2 only: for `delivered`, the SHA-256 (hex) of the "
                "signed snapshot delivered (see /api/letters/{slug}/deliveries); else ''.",
            },
        },
    },
    "Deliveries": _record(
        {
            "deliveries": {
                "type": "array",
                "description": "Oldest first.",
                "items": _record(
                    {
                        "recipient": {"type": "string"},
                        "method": {
                            "enum": ["email", "other"],
                            "description": "email: sent by this site; other: in person or "
                            "by other means, as recorded by the authors",
                        },
                        "delivered_on": {"type": "string", "format": "date"},
                        "version": {"type": "integer", "minimum": 1},
                        "verified_count": {"type": "integer", "minimum": 0},
                        "recorded_at": {"type": "string", "format": "date-time"},
                        "state": {
                            "enum": ["sending", "sent", "failed", None],
                            "description": "By email: whether the recipient's mail server "
                            "accepted it; null otherwise",
                        },
                        "ledger_seq": {"type": "integer", "minimum": 1},
                        "digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "snapshot_url": {"type": "string", "format": "uri"},
                    }
                ),
            },
            "follow_ups": {
                "type": "array",
                "description": "The recipient's replies and later outcomes, in date order.",
                "items": _record(
                    {
                        "kind": {"enum": ["reply", "outcome"]},
                        "date": {"type": "string", "format": "date"},
                        "source": {"type": ["string", "null"]},
                        "text": {"type": "string", "description": "Markdown"},
                        "recorded_at": {"type": "string", "format": "date-time"},
                    }
                ),
            },
        }
    ),
    "Signatures": _record(
        {
            "signatures": {
                "type": "array",
                "items": _record(
                    {
                        "name": {"type": "string"},
                        "title": {"type": ["string", "null"]},
                        "organization": {"type": "string"},
                        "signed_at": {"type": "string", "format": "date"},
                    }
                ),
            },
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `after` for the next page; null on the last page.",
            },
        }
    ),
    "SignRequest": {
        "type": "object",
        "required": ["email"],
        "properties": {
            "email": {"type": "string", "maxLength": 254},
            "name": {"type": ["string", "null"], "maxLength": 100},
            "title": {"type": ["string", "null"], "maxLength": 120},
            "show_name": {"type": "boolean", "default": False},
            "reveal_at": {
                "enum": [None, 10, 50, 100, 500],
                "description": "Hidden signers only (a name is then required): show the name "
                "once this many from the same organization have signed. Ignored when "
                "show_name is true.",
            },
        },
        # The rules the server applies between fields: a name to show is required when the
        # name is shown now, or later at a threshold.
        "allOf": [
            {
                "if": {"required": ["show_name"], "properties": {"show_name": {"const": True}}},
                "then": {"required": ["name"], "properties": {"name": {"pattern": "\\S"}}},
            },
            {
                "if": {
                    "required": ["reveal_at"],
                    "properties": {
                        "reveal_at": {"type": "integer"},
                        "show_name": {"not": {"const": True}},
                    },
                },
                "then": {"required": ["name"], "properties": {"name": {"pattern": "\\S"}}},
            },
        ],
    },
    "Accepted": _record({"status": {"const": "check_your_email"}}),
    "VerifyRequest": _record(
        {
            "token": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "description": "The token from the emailed link (after /confirm/).",
            }
        }
    ),
    "Verified": _record(
        {
            "status": {"const": "verified"},
            "outcome": {
                "enum": ["verified", "updated"],
                "description": "updated: this address had signed already; details updated",
            },
            "letter": {"type": "string"},
            "receipt": {
                "type": ["string", "null"],
                "description": "Shown once and never stored: finds the signer's ledger entry "
                "(null when the signature was already counted).",
            },
        }
    ),
}

PATHS: dict[str, Any] = {
    "/api/letters": {
        "get": {
            "summary": "Published and closed letters",
            "responses": {"200": _ok("The letters", "Letters")},
        }
    },
    "/api/letters/{slug}": {
        "get": {
            "summary": "A letter and its verified counts",
            "parameters": [SLUG],
            "responses": {
                "200": _ok("The letter", "Letter"),
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/signatures": {
        "get": {
            "summary": "Verified signatures whose signers chose to show their name",
            "parameters": [
                SLUG,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                },
                {
                    "name": "after",
                    "in": "query",
                    "description": "Opaque: the cursor from the previous page's `next`.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                },
            ],
            "responses": {
                "200": _ok("A page of names, oldest first", "Signatures"),
                "400": _error("A bad limit or cursor"),
                "404": _error("No published letter has this slug"),
            },
        },
        "post": {
            "summary": "Ask to sign: a link is emailed to the address",
            "parameters": [SLUG],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/SignRequest"}}
                },
            },
            "responses": {
                "202": _ok(
                    "The link is on its way (the same answer if already signed)", "Accepted"
                ),
                "400": _error("The body is not a JSON object"),
                "404": _error("No published letter has this slug"),
                "409": _error("letter_closed"),
                "413": _error("The body is too large"),
                "415": _error("The body is not application/json"),
                "422": _error("domain_not_allowed, invalid_email or a bad field"),
                "429": _error("rate_limited; see the Retry-After header"),
            },
        },
    },
    "/api/letters/{slug}/signatures.csv": {
        "get": {
            "summary": "All named signatures as CSV: name, title, organization, signed_at",
            "parameters": [SLUG],
            "responses": {
                "200": {"description": "CSV", "content": {"text/csv": {}}},
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/daily.csv": {
        "get": {
            "summary": "Verified signatures per UTC day and organization as CSV",
            "parameters": [SLUG],
            "responses": {
                "200": {"description": "CSV", "content": {"text/csv": {}}},
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/ledger": {
        "get": {
            "summary": "The public ledger as JSON Lines: one LedgerEntry per line, oldest first",
            "parameters": [
                SLUG,
                {
                    "name": "after",
                    "in": "query",
                    "description": "Start after this entry number (default 0: all of it).",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 9_999_999_999},
                },
            ],
            "responses": {
                "200": {
                    "description": "Entries after..the length when the download started; "
                    "headers X-Ledger-Length and X-Ledger-Head give that length and its head",
                    "content": {
                        "application/jsonl": {
                            "schema": {"$ref": "#/components/schemas/LedgerEntry"}
                        }
                    },
                },
                "400": _error("invalid_parameter"),
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/snapshot": {
        "get": {
            "summary": "The counts and the ledger head, signed by this instance (compact JWS, "
            "ES256; the key is at /.well-known/jwks.json)",
            "parameters": [SLUG],
            "responses": {
                "200": {
                    "description": "A compact JWS whose payload holds the Letter counts, `iat`, "
                    "`iss`, `sub` and `ledger` {length, head}",
                    "content": {"application/jose": {"schema": {"type": "string"}}},
                },
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/deliveries": {
        "get": {
            "summary": "Deliveries of the letter, and the replies and outcomes its authors "
            "published",
            "parameters": [SLUG],
            "responses": {
                "200": _ok("Deliveries and follow-ups", "Deliveries"),
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/letters/{slug}/deliveries/{seq}/snapshot": {
        "get": {
            "summary": "The signed snapshot delivered with ledger entry `seq`, as attached to "
            "the delivery; that entry's `digest` is its SHA-256",
            "parameters": [
                SLUG,
                {
                    "name": "seq",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": {
                    "description": "A compact JWS, like /api/letters/{slug}/snapshot",
                    "content": {"application/jose": {"schema": {"type": "string"}}},
                },
                "404": _error("No such letter, or no delivery with this entry"),
            },
        }
    },
    "/api/letters/{slug}/events": {
        "get": {
            "summary": "Server-Sent Events: an event `count` with the Letter JSON on each change",
            "parameters": [SLUG],
            "responses": {
                "200": {"description": "An event stream", "content": {"text/event-stream": {}}},
                "404": _error("No published letter has this slug"),
            },
        }
    },
    "/api/verify": {
        "post": {
            "summary": "Confirm a signature with the token from the emailed link",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/VerifyRequest"}}
                },
            },
            "responses": {
                "200": _ok("Verified and counted", "Verified"),
                "400": _error("invalid_token or expired_token"),
                "409": _error("letter_closed"),
                "415": _error("The body is not application/json"),
            },
        }
    },
}


def description(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Letters",
            "version": "1",
            "description": "Open letters signed by verified employees. Errors are "
            '`{"error": {"code", "message", "field"}}`.',
        },
        "servers": [{"url": base_url}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(
        description(request.app.state.settings.base_url),
        headers={"Cache-Control": "public, max-age=3600"},
    )
