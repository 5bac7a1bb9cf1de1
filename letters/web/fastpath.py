"""Answering readers who reload a popular letter before routing, from finished answers.

On the day a letter goes viral nearly every request is a reader reloading the letter
page, the tally, the badge or the JSON to watch the count. The views already serve those
from the per-process cache (letters.web.cache), but each hit still went through route
matching, three middlewares and a new Response: 1.3 to 2 times the work of a bare
endpoint (docs/benchmarks.md). This layer, outermost but for the one that chooses the
reader's language (letters.i18n), keeps the finished answer (status, headers, body) the
app produced for a plain GET of those addresses, in the same cache and for the same
CACHE_SECONDS, and replays it. It is kept under the tags the view gave its answer (the
letter it shows, or the lists), and dropped with the letter's other cached copies when
this process confirms a signature (web.common.forget_letter), so a signer sees their own
signature at once; other processes catch up within the TTL.

The letter page carries each reader's CSRF token, so for it the layer keeps the page
with a placeholder (handed over by the view) and signs the reader's token per request,
setting the CSRF cookie for a first visit exactly as the security middleware would.

Pages are kept once per language, the JSON and the badge once for all.

Anything else goes through untouched: other addresses, query strings, HEAD and POST,
cross-origin requests (the CORS layer answers those), and answers that are not a single
200 body.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letters.models import SLUG_PATTERN
from letters.tokens import CSRF, Signer
from letters.web import cache
from letters.web.cache import TTLCache, etag_for
from letters.web.language import NEUTRAL, of
from letters.web.routing import RouteIndex
from letters.web.security import CSRF_COOKIE, csrf_set_cookie, new_csrf_cookie, valid_csrf_cookie

# Stands for the reader's CSRF token in the cached letter page (see web.pages).
CSRF_PLACEHOLDER = b"\x00csrf\x00"
PAGE_TEMPLATE = "fast_page_template"  # scope["state"] key the letter page view fills
# The addresses this layer answers: what readers reload on a busy day.
ROUTES = ("index", "letter", "tally", "widget", "badge", "api_letters", "api_letter")
# Response headers recomputed per request rather than replayed.
PER_REQUEST = (b"content-length", b"etag", b"set-cookie")


@dataclass(frozen=True)
class Answer:
    headers: list[tuple[bytes, bytes]]  # without PER_REQUEST headers
    body: bytes
    etag: bytes  # for a page template: the page's ETag before the reader's token


def fast_key(index: RouteIndex, path: str, language: str) -> Hashable | None:
    """The cache key of an address this layer may answer, or None.

    Pages hold the reader's language (chosen by web.language, outside this layer), so
    their keys do too; the JSON and the badge are the same in every language.
    """
    found = index.match(path)
    if found is None:
        return None
    name, slug = found
    if slug is not None and not SLUG_PATTERN.match(slug):
        return None
    return cache.key("fast", name, slug, None if name in NEUTRAL else language)


class FastReadMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        store: TTLCache,
        signer: Signer,
        secure_cookies: bool,
        routes: RouteIndex,
    ) -> None:
        self.app = app
        self.cache = store
        self.routes = routes
        self.signer = signer
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if (
            self.cache.ttl > 0
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
        ):
            key = fast_key(self.routes, scope["path"], of(scope))
        if key is None:
            await self.app(scope, receive, send)
            return
        request_headers = dict(scope["headers"])
        if b"origin" in request_headers:
            await self.app(scope, receive, send)
            return
        answer = self.cache.peek(key)
        if answer is None:
            await self._capture(key, scope, receive, send)
            return
        headers = list(answer.headers)
        body, etag = answer.body, answer.etag
        if CSRF_PLACEHOLDER in body:
            body, etag = self._with_token(answer, request_headers, headers)
        headers.append((b"etag", etag))
        if etag in _tags(request_headers.get(b"if-none-match", b"")):
            headers = [(k, v) for k, v in headers if k != b"content-type"]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _with_token(
        self,
        answer: Answer,
        request_headers: dict[bytes, bytes],
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[bytes, bytes]:
        """The letter page with this reader's CSRF token (and cookie, on a first visit)."""
        cookies = cookie_parser(request_headers.get(b"cookie", b"").decode("latin-1"))
        cookie = cookies.get(CSRF_COOKIE, "")
        if not valid_csrf_cookie(cookie):
            cookie = new_csrf_cookie()
            headers.append((b"set-cookie", csrf_set_cookie(cookie, self.secure_cookies).encode()))
        token = self.signer.untimed(CSRF).dumps(cookie).encode()
        # The same ETag the view gives (etag_for(page etag, token)), so 304s still work.
        return (
            answer.body.replace(CSRF_PLACEHOLDER, token),
            etag_for(answer.etag.decode(), token.decode()).encode(),
        )

    async def _capture(self, key: Hashable, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        complete = False
        body = b""

        async def capture(message: Message) -> None:
            nonlocal start, complete, body
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and start is not None:
                if not message.get("more_body", False) and not body:
                    complete = True
                body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, capture)
        if start is None or start["status"] != 200 or not complete:
            return
        headers = list(start.get("headers", []))
        state = scope.get("state", {})
        template = state.get(PAGE_TEMPLATE)
        if template is not None:
            page, page_etag = template
            body, etag = page.encode(), page_etag.encode()
        else:
            if any(name == b"set-cookie" for name, _ in headers):
                return  # an answer for one browser only
            etag = next((value for name, value in headers if name == b"etag"), b"")
            if not etag:
                return
        tags = state.get(cache.ANSWER_TAGS)
        if not tags:
            return  # nothing says when this answer would become stale
        kept = [(name, value) for name, value in headers if name not in PER_REQUEST]
        self.cache.put(key, Answer(kept, body, etag), tags)


def _tags(header: bytes) -> list[bytes]:
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]
