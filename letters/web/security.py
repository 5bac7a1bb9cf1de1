"""CSRF protection, security headers and the request body limit.

CSRF: a form is accepted when the browser says it was sent from one of this site's own pages
(`Sec-Fetch-Site: same-origin`), and refused when it says anything else (`cross-site`,
`same-site`, `none`): browsers set that header themselves and no page can forge it. So the
letter page, which a shared cache serves to every reader, carries no token and sets no
cookie. Not `Origin`: `Referrer-Policy: no-referrer` makes browsers send `Origin: null`
from every page of this site.

Browsers send Sec-Fetch-Site only to secure origins (https, or localhost), and older ones
not at all. Without it the signed token decides, as before: each browser gets a random
`csrftoken` cookie (HttpOnly, SameSite=Lax) and a form carries the cookie's value signed
with the secret key (salt "csrf"); the POST is accepted only when the signed field matches
the cookie. An attacker's page can neither read the cookie nor forge the signature. Pages
for one reader (a link's page, the author workspace) carry the token in every form; a form
of the letter page sent without either is answered with the form again, now carrying a
token, to send once more (web.pages, web.signer).

The JSON API needs no token: it only accepts `application/json`, which a cross-site form
cannot send without a CORS preflight that this app never grants.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature
from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letters.i18n import N_, gettext
from letters.tokens import CSRF, Signer
from letters.web import HTTPMiddleware, is_api

CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrftoken"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # No page ever needs to tell another site where the reader came from, and magic-link
    # pages must never leak their token in a Referer header.
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class CSRFError(Exception):
    pass


def valid_csrf_cookie(value: str) -> bool:
    return 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def csrf_set_cookie(value: str, secure: bool) -> str:
    """The Set-Cookie header value that gives a browser its CSRF secret."""
    cookie = f"{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000"
    return cookie + "; Secure" if secure else cookie


def csrf_cookie_value(request: Request) -> str:
    """This browser's CSRF secret; a new one is made (and set by the middleware) if absent."""
    state = request.scope.setdefault("state", {})
    if "csrf_cookie" not in state:
        existing = request.cookies.get(CSRF_COOKIE, "")
        valid = valid_csrf_cookie(existing)
        state["csrf_cookie"] = existing if valid else new_csrf_cookie()
        state["csrf_cookie_new"] = not valid
    return str(state["csrf_cookie"])


def csrf_token(request: Request) -> str:
    signer: Signer = request.app.state.signer
    return str(signer.untimed(CSRF).dumps(csrf_cookie_value(request)))


def fetch_site(request: Request) -> str | None:
    """Where the browser says the request comes from (Sec-Fetch-Site), None if it does not."""
    return request.headers.get("sec-fetch-site")


def check_csrf(request: Request, form: FormData) -> None:
    """Accept a form sent from this site's own pages, by the browser's word or by token."""
    site = fetch_site(request)
    if site is not None:
        if site == "same-origin":
            return
        raise CSRFError
    signer: Signer = request.app.state.signer
    submitted = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not isinstance(submitted, str) or not cookie:
        raise CSRFError
    try:
        expected = signer.untimed(CSRF).loads(submitted)
    except BadSignature:
        raise CSRFError from None
    if not isinstance(expected, str) or not hmac.compare_digest(expected, cookie):
        raise CSRFError


class SecurityHeadersMiddleware(HTTPMiddleware):
    """Adds security headers to every response and sets the CSRF cookie when one was made."""

    def __init__(self, app: ASGIApp, secure_cookies: bool) -> None:
        super().__init__(app)
        self.secure_cookies = secure_cookies

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                framable = "frame-ancestors *" in headers.get("content-security-policy", "")
                for name, value in SECURITY_HEADERS:
                    if name.decode() not in headers:
                        if name == b"x-frame-options" and framable:
                            continue
                        headers.append(name.decode(), value.decode())
                if self.secure_cookies:  # served over https
                    headers["strict-transport-security"] = "max-age=31536000"
                state: dict[str, Any] = scope.get("state", {})
                if state.get("csrf_cookie_new"):
                    headers.append(
                        "set-cookie", csrf_set_cookie(state["csrf_cookie"], self.secure_cookies)
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


# Raised while a view reads its body; BodyLimitMiddleware answers them, so views let them pass.
BODY_ERRORS = (BodyTooLarge, BodyTooSlow, ClientDisconnect)


class BodyLimitMiddleware(HTTPMiddleware):
    """Refuses request bodies over `max_bytes` with 413, before reading them whole, and
    bodies that stall for `read_timeout` seconds between parts with 408, so slow clients
    cannot hold workers. A client that goes away mid-body ends its request quietly: there
    is no one left to answer and nothing went wrong here.

    Uvicorn has no timeout for reading request headers: the proxy in front sets one (the
    README's nginx example).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float = 10.0) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _too_large(scope, send, 400, N_("Invalid Content-Length header."))
                    return
                if declared > self.max_bytes:
                    await _too_large(scope, send, 413, N_("The request body is too large."))
                    return

        received = 0
        started = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                return await receive()  # waiting for a disconnect: no deadline
            try:
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(scope, send, 413, N_("The request body is too large."))
        except BodyTooSlow:
            if not started:
                await _too_large(scope, send, 408, N_("The request body came too slowly."))
        except ClientDisconnect:
            pass


async def _too_large(scope: Scope, send: Send, status: int, text: str) -> None:
    if is_api(scope.get("path", "")):
        code = {413: "body_too_large", 408: "request_timeout"}.get(status, "bad_request")
        body = f'{{"error": {{"code": "{code}", "message": "{text}", "field": null}}}}'.encode()
        content_type = b"application/json"
    else:
        body = gettext(text).encode()
        content_type = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
