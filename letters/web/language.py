"""The reader's language on the web: chosen for each request (the `lang` cookie set by the
footer's switcher, else the browser's Accept-Language, else English), and the switcher.

The JSON interface and the other addresses programs read (NEUTRAL, by route name) answer
the same in every language: programs read codes, not prose, and their answers must not
change with a browser's settings.

The letter page has an address per language (IN_PATH: `/es/letters/{slug}`), whose answer
is the same for every reader, so a shared cache can hold it (docs/architecture.md, "A
letter page a shared cache can serve"). Its shared address, `/letters/{slug}`, the one in
emails, QR codes and feeds, only redirects to the reader's language (`to_language`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letters import i18n
from letters.web import HTTPMiddleware
from letters.web.common import settings_of
from letters.web.routing import RouteIndex

STATE_KEY = "language"  # where the middleware leaves the request's language in scope["state"]
COOKIE_NAME = i18n.COOKIE.encode() + b"="
VARY = "Accept-Language, Cookie"
# The routes whose address starts with their language (`/{language:language}/...`).
IN_PATH = ("letter_in",)
# The routes whose answers are the same in every language.
NEUTRAL = (
    "api_letters",
    "api_letter",
    "api_events",
    "api_signatures",
    "api_verify",
    "api_ledger",
    "api_snapshot",
    "api_deliveries",
    "api_delivered_snapshot",
    "qr",
    "signatures_csv",
    "daily_csv",
    "openapi",
    "jwks",
    "badge",
    "health",
    "ready",
    "static",
)


class LanguageConvertor(Convertor[str]):
    """`{language:language}` in a route's path: one of the interface's languages."""

    regex = "|".join(sorted(i18n.LANGUAGES))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        if value not in i18n.LANGUAGES:
            raise ValueError(f"no language {value!r}")
        return value


register_url_convertor("language", LanguageConvertor())


def of(scope: Scope) -> str:
    """The language the middleware chose for a request (also after it has returned)."""
    language = scope.get("state", {}).get(STATE_KEY, i18n.DEFAULT)
    return language if language in i18n.LANGUAGES else i18n.DEFAULT


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site, else the home page: never another site.

    Browsers read `//host`, `/\\host` and `https://host` as other sites, and drop tabs and
    line breaks before reading, so anything like them is refused.
    """
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(char) < 0x21 or ord(char) == 0x7F for char in value)
    ):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


async def switch(request: Request) -> Response:
    """`GET /language/{code}?next=/path`: remember the reader's language, go back to the page.

    A plain link, so it works without JavaScript; the choice lasts a year.
    """
    code = request.path_params["code"]
    if code not in i18n.LANGUAGES:
        raise HTTPException(404)
    target = local_path(request.query_params.get("next"))
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        i18n.COOKIE,
        code,
        max_age=i18n.COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings_of(request).base_url.startswith("https"),
    )
    return response


# The redirect depends on the reader's cookie and Accept-Language, so caches must key it on
# both; it is cheap to make again.
REDIRECT_HEADERS = {"Cache-Control": "no-cache", "Vary": VARY}


def to_language(name: str) -> Callable[[Request], Awaitable[Response]]:
    """A view redirecting to route `name` in the reader's language, with the same parameters
    and query: the only answer of the shared address that varies with the reader."""

    async def redirect(request: Request) -> Response:
        path = request.app.url_path_for(name, language=of(request.scope), **request.path_params)
        query = request.url.query
        return RedirectResponse(f"{path}?{query}" if query else path, 302, headers=REDIRECT_HEADERS)

    return redirect


@pass_context
def return_path(context: Context) -> str:
    """Where a language link in the footer brings the reader back to.

    Pages cached for every reader say it themselves (`here`); otherwise it is the address
    of this request, or, after a form was posted, that address if it can be read with a
    GET, else the home page.
    """
    here = context.get("here")
    if isinstance(here, str):
        return here
    request = context.get("request")
    if not isinstance(request, Request):
        return "/"
    path = request.url.path
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return f"{path}?{query}" if query else path
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
        return path
    return "/"


routes = [
    Route("/language/{code}", switch, name="language"),
]


# How an answer depends on the reader's language (scope["state"][KIND_KEY]).
NEGOTIATED = "negotiated"  # chosen from the cookie or Accept-Language: answers vary with it
IN_ADDRESS = "in-address"  # said by the address (IN_PATH): the same for every reader
NO_LANGUAGE = "neutral"  # the same in every language (NEUTRAL)
KIND_KEY = "language_kind"


class Chooser:
    """Chooses a request's language once, for the layers before routing that need it."""

    def __init__(self, neutral: RouteIndex, in_path: RouteIndex) -> None:
        self.neutral = neutral
        self.in_path = in_path

    def __call__(self, scope: Scope) -> tuple[str, str]:
        """(language, kind), also left in scope["state"] for the views and the next layers."""
        state = scope.setdefault("state", {})
        if KIND_KEY in state:
            return state[STATE_KEY], state[KIND_KEY]
        path = scope["path"]
        language = i18n.DEFAULT
        if path in self.neutral:
            kind = NO_LANGUAGE
        elif path in self.in_path:  # `/{language}/...`: the address says it, whoever asks
            kind = IN_ADDRESS
            language = path.split("/", 2)[1]
        else:
            kind = NEGOTIATED
            headers = dict(scope["headers"])
            cookie = headers.get(b"cookie", b"")
            chosen = None
            if COOKIE_NAME in cookie:
                chosen = cookie_parser(cookie.decode("latin-1")).get(i18n.COOKIE)
            accept_language = headers.get(b"accept-language", b"").decode("latin-1")
            language = i18n.negotiate(chosen, accept_language)
        state[STATE_KEY], state[KIND_KEY] = language, kind
        return language, kind


class LocaleMiddleware(HTTPMiddleware):
    """Sets the request's language (chosen by `choose`, or earlier by the fast path) for the
    views, and says it on HTML answers, with whether they vary with the reader's."""

    def __init__(self, app: ASGIApp, choose: Chooser) -> None:
        super().__init__(app)
        self.choose = choose

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        language, kind = self.choose(scope)
        if kind == NO_LANGUAGE:
            with i18n.using(language):
                await self.app(scope, receive, send)
            return

        async def send_with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_language(message, language, vary=kind == NEGOTIATED)
            await send(message)

        with i18n.using(language):
            await self.app(scope, receive, send_with_language)


def _with_language(start: Message, language: str, vary: bool) -> Message:
    """HTML pages (and their 304s, which carry no type) say their language and, unless their
    address says it (`vary` False), that it varies with the reader's."""
    headers = list(start.get("headers", []))
    content_type = next((value for name, value in headers if name == b"content-type"), None)
    if content_type is None and start["status"] != 304:
        return start
    if content_type is not None and not content_type.startswith(b"text/html"):
        return start
    if not vary:
        kept = [(name, value) for name, value in headers if name != b"content-language"]
        kept.append((b"content-language", language.encode()))
        return {**start, "headers": kept}
    others = [value.decode("latin-1") for name, value in headers if name == b"vary"]
    kept = [(name, value) for name, value in headers if name not in (b"vary", b"content-language")]
    varies = ", ".join([*others, VARY])
    kept.append((b"vary", varies.encode("latin-1")))
    kept.append((b"content-language", language.encode()))
    # A new message, not the same one changed: the fast path keeps what passes under it.
    return {**start, "headers": kept}
