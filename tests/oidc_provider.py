"""A small OpenID Connect provider for the tests: discovery, JWKS, authorize and token.

It runs with uvicorn on a free loopback port, in a thread, and signs its id_tokens with
joserfc, so the app's Authlib client fetches and checks everything over real HTTP. A test
picks who signs in next (`user`) and can make the provider misbehave (`tamper`) to check
that the app refuses: a signature by another key, a wrong nonce, another audience or
issuer, an expired token.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.conftest import free_port

CLIENT_ID = "letters-test"
CLIENT_SECRET = "test-client-secret-0123456789"
TAMPERING = ("signature", "nonce", "audience", "issuer", "expired", "no_id_token")


@dataclass
class Provider:
    url: str
    key: RSAKey = field(default_factory=lambda: provider_key())
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-1",
            "email": "ada@example.org",
            "email_verified": True,
            "name": "Ada Lovelace",
        }
    )
    tamper: str | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        """Approves at once, as if the person had signed in at the provider."""
        query = request.query_params
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": query.get("nonce"),
            "redirect_uri": query.get("redirect_uri"),
            "user": dict(self.user),
        }
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return RedirectResponse(target, status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        grant = self.codes.pop(str(form.get("code")), None)  # codes work once
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **grant["user"],
        }
        key = self.key
        if self.tamper == "signature":  # same key id, another key
            key = RSAKey.generate_key(parameters={"kid": "k1"})
        elif self.tamper == "nonce":
            claims["nonce"] = "not-the-nonce-this-browser-was-given"
        elif self.tamper == "audience":
            claims["aud"] = "another-client"
        elif self.tamper == "issuer":
            claims["iss"] = "https://evil.example"
        elif self.tamper == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 1800
        answer: dict[str, Any] = {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer"}
        answer["expires_in"] = 300
        if self.tamper != "no_id_token":
            answer["id_token"] = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return JSONResponse(answer)


@cache
def provider_key() -> RSAKey:
    """The provider's signing key, made once per session (an RSA key takes a while)."""
    return RSAKey.generate_key(parameters={"kid": "k1"})


@contextmanager
def running_provider() -> Iterator[Provider]:
    port = free_port()
    provider = Provider(url=f"http://127.0.0.1:{port}")
    config = uvicorn.Config(
        provider.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="oidc-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test OpenID provider did not start")
        time.sleep(0.02)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(10)
