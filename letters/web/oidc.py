"""Single sign-on for authors with any OpenID Connect provider, through Authlib.

Configured by OIDC_ISSUER (the issuer's URL, or the URL of its discovery document),
OIDC_CLIENT_ID and OIDC_CLIENT_SECRET. Authlib keeps each sign-in's state and nonce in a
short-lived signed cookie (Starlette's SessionMiddleware, only under /authors/oidc/), then
checks the id_token: its signature against the keys the provider publishes (JWKS), its
issuer, audience and expiry, and its nonce against the one this browser was given. Anything
else is refused. The person is then matched to an author (letters.authors.accounts).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response

from letters.authors.accounts import Identity
from letters.i18n import gettext
from letters.settings import Settings

logger = logging.getLogger("letters.web.oidc")

DISCOVERY = "/.well-known/openid-configuration"
STATE_COOKIE = "letters_oidc"
STATE_PATH = "/authors/oidc"
STATE_MAX_AGE = 600
CALLBACK = "/authors/oidc/callback"


class SignOnFailed(Exception):
    """The provider's answer was refused; the message is safe to show."""


def discovery_url(issuer: str) -> str:
    issuer = issuer.strip().rstrip("/")
    return issuer if issuer.endswith(DISCOVERY) else issuer + DISCOVERY


def oidc_state_middleware(settings: Settings) -> Middleware:
    """The signed cookie holding a sign-in's state and nonce, for ten minutes."""
    secret = hmac.new(settings.secret_key.encode(), b"oidc-state", hashlib.sha256).hexdigest()
    return Middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=STATE_COOKIE,
        max_age=STATE_MAX_AGE,
        path=STATE_PATH,
        same_site="lax",  # the provider sends the browser back with a top-level GET
        https_only=settings.base_url.startswith("https"),
    )


def oidc_client(settings: Settings) -> StarletteOAuth2App | None:
    """The provider's client, or None when single sign-on is not configured."""
    if not settings.oidc_enabled:
        return None
    oauth = OAuth()
    oauth.register(
        "oidc",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=discovery_url(settings.oidc_issuer),
        client_kwargs={"scope": "openid email profile", "timeout": 10},
    )
    client: StarletteOAuth2App = oauth.create_client("oidc")
    return client


async def start(client: StarletteOAuth2App, request: Request, settings: Settings) -> Response:
    """Send the browser to the provider. The callback address comes from BASE_URL."""
    try:
        response: Response = await client.authorize_redirect(request, settings.base_url + CALLBACK)
    except Exception as error:  # the provider is unreachable or its metadata is broken
        logger.warning("single sign-on unavailable: %s", type(error).__name__)
        raise SignOnFailed(gettext("Single sign-on is not available right now.")) from None
    return response


async def finish(client: StarletteOAuth2App, request: Request) -> Identity:
    """Check the provider's answer and return who signed in. Raises SignOnFailed."""
    if request.query_params.get("error"):
        raise SignOnFailed(gettext("Sign-in was cancelled or refused by your identity provider."))
    try:
        token: dict[str, Any] = await client.authorize_access_token(request)
    except Exception as error:  # bad state, signature, nonce, audience, expiry, network...
        logger.warning("single sign-on refused: %s", type(error).__name__)
        raise SignOnFailed(
            gettext("This sign-in could not be verified. Please try again.")
        ) from None
    claims = token.get("userinfo")
    if (
        not claims
        or not isinstance(claims.get("iss"), str)
        or not isinstance(claims.get("sub"), str)
    ):
        raise SignOnFailed(gettext("Your identity provider did not say who you are."))
    email = claims.get("email")
    verified = claims.get("email_verified") is True
    name = claims.get("name")
    return Identity(
        issuer=claims["iss"],
        subject=claims["sub"],
        email=email if verified and isinstance(email, str) else None,
        name=name if isinstance(name, str) else "",
    )
