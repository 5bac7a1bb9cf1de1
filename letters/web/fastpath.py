"""Answering readers who reload a popular letter before routing, from finished answers.

On the day a letter goes viral nearly every request is a reader reloading the letter
page, the tally, the badge or the JSON to watch the count. The views already serve those
from the per-process cache (letters.web.cache), but each hit still went through route
matching, four middlewares and a new Response: 1.3 to 2 times the work of a bare
endpoint (docs/benchmarks.md). This layer, outermost, chooses the reader's language (with
web.language's Chooser, which the language layer inside then reuses), keeps the finished
answer (status, headers as the reader got them, body) the app produced for a plain GET of
those addresses, in the same cache and for the same CACHE_SECONDS, and replays it: header
lists built once, two messages sent, nothing else run. It is kept under the tags the view
gave its answer (the letter it shows, or the lists), and dropped with the letter's other
cached copies when this process confirms a signature (web.common.forget_letter), so a
signer sees their own signature at once; other processes catch up within the TTL.

Pages are kept once per language, the JSON and the badge once for all. The letter page is
answered at its address per language (web.language): the same bytes for every reader.

Anything else goes through untouched: other addresses, query strings, HEAD and POST,
cross-origin requests (the CORS layer answers those), and answers that are not a single
200 body.
"""

from __future__ import annotations

import gzip
from collections.abc import Hashable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letters.models import SLUG_PATTERN
from letters.web import cache
from letters.web.assets import GZIP_LEVEL, GZIP_MINIMUM_SIZE
from letters.web.cache import TTLCache
from letters.web.language import NEUTRAL, Chooser
from letters.web.routing import RouteIndex

# The addresses this layer answers: what readers reload on a busy day.
ROUTES = ("index", "letter_in", "tally", "widget", "badge", "api_letters", "api_letter")


@dataclass(frozen=True)
class Answer:
    """A finished answer, with its header lists built once for every reader it is sent to,
    and its body compressed once for the readers who accept gzip (this layer is outside the
    app's compression, web.assets.CompressReads, so a replay costs nothing more)."""

    headers: list[tuple[bytes, bytes]]  # of the 200
    not_modified: list[tuple[bytes, bytes]]  # of a 304: the same, less the body's type and size
    body: bytes
    etag: bytes
    gzip_headers: list[tuple[bytes, bytes]] | None = None  # None: sent as it is to everyone
    gzip_body: bytes = b""

    @classmethod
    def of(cls, headers: list[tuple[bytes, bytes]], body: bytes, etag: bytes) -> Answer:
        kept = [(name, value) for name, value in headers if name != b"content-length"]
        if len(body) >= GZIP_MINIMUM_SIZE:
            kept = _varying_on_encoding(kept)
        plain = [*kept, (b"content-length", str(len(body)).encode())]
        bodiless = [(name, value) for name, value in plain if name not in BODY_HEADERS]
        if len(body) < GZIP_MINIMUM_SIZE:
            return cls(plain, bodiless, body, etag)
        packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        encoded = [
            *kept,
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(packed)).encode()),
        ]
        return cls(plain, bodiless, body, etag, encoded, packed)


# Headers that describe a body, which a 304 has not.
BODY_HEADERS = (b"content-type", b"content-length")


def _varying_on_encoding(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with Accept-Encoding added to their Vary (the answer depends on it)."""
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            if b"accept-encoding" in value.lower():
                return headers
            return [*headers[:index], (name, value + b", Accept-Encoding"), *headers[index + 1 :]]
    return [*headers, (b"vary", b"Accept-Encoding")]


def _accepts_gzip(header: bytes) -> bool:
    return b"gzip" in header.lower()


def fast_key(index: RouteIndex, path: str, language: str) -> Hashable | None:
    """The cache key of an address this layer may answer, or None.

    Pages hold the reader's language (chosen with web.language's Chooser), so their keys
    do too; the JSON and the badge are the same in every language.
    """
    found = index.match(path)
    if found is None:
        return None
    name, slug = found
    if slug is not None and not SLUG_PATTERN.match(slug):
        return None
    return cache.key("fast", name, slug, None if name in NEUTRAL else language)


class FastReadMiddleware:
    def __init__(self, app: ASGIApp, store: TTLCache, routes: RouteIndex, choose: Chooser) -> None:
        self.app = app
        self.cache = store
        self.routes = routes
        self.choose = choose

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if (
            self.cache.ttl > 0
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
        ):
            key = fast_key(self.routes, scope["path"], self.choose(scope)[0])
        if key is None:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        gzip_accepted = False
        for name, value in scope["headers"]:
            if name == b"origin":  # cross-origin: the CORS layer answers
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"accept-encoding":
                gzip_accepted = _accepts_gzip(value)
        answer = self.cache.peek(key)
        if answer is None:
            await self._capture(key, scope, receive, send)
            return
        if if_none_match is not None and answer.etag in _tags(if_none_match):
            await send(
                {"type": "http.response.start", "status": 304, "headers": answer.not_modified}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if gzip_accepted and answer.gzip_headers is not None:
            headers, body = answer.gzip_headers, answer.gzip_body
        else:
            headers, body = answer.headers, answer.body
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _capture(self, key: Hashable, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the app's answer as it comes (compressed by the layer below for a reader who
        accepts gzip), and keep it plain if it may be replayed."""
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
        if any(name == b"set-cookie" for name, _ in headers):
            return  # an answer for one browser only
        etag = next((value for name, value in headers if name == b"etag"), b"")
        if not etag:
            return
        tags = scope.get("state", {}).get(cache.ANSWER_TAGS)
        if not tags:
            return  # nothing says when this answer would become stale
        if (b"content-encoding", b"gzip") in headers:
            # Compressed for this reader: kept plain (Answer.of compresses its own copy).
            body = gzip.decompress(body)
            headers = [(name, value) for name, value in headers if name != b"content-encoding"]
        self.cache.put(key, Answer.of(headers, body, etag), tags)


def _tags(header: bytes) -> list[bytes]:
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]
