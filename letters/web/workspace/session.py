"""The signed-in author: the session cookie, the `signed_in` guard every author page goes
through, and how author pages answer. Every author page checks the session on the server
and is never stored by a cache."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from letters.authors import accounts
from letters.authors.access import NotAllowed
from letters.i18n import gettext
from letters.models import Author
from letters.record.public import LetterNotFound, letter_id
from letters.web import cache, common
from letters.web.common import NO_STORE, db_session, read_form, settings_of

SESSION_COOKIE = "letters_author"
# Kept by a browser that signed in by link: its own budget of sign-in links (see
# authors.accounts.device_key). Not a session: it opens nothing.
DEVICE_COOKIE = "letters_device"
COOKIE_PATH = "/authors"
SAFE_NEXT = re.compile(r"\A/authors(/[a-z0-9\-/]*)?\Z")

AuthorView = Callable[[Request, Author], Awaitable[Response]]
# The most fields any author form has (the letter editor with its 50 domain rows).
MAX_FIELDS = 200


@dataclass(frozen=True)
class Refused:
    """A form sent back: what was typed, shown again, and what to fix (answered with 422)."""

    form: dict[str, Any]
    errors: dict[str, str]


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """An author page: private, never stored by caches."""
    context.setdefault("author", request.scope.get("state", {}).get("author"))
    return common.render(request, name, context, status, NO_STORE)


def message(request: Request, status: int, text: str, title: str | None = None) -> Response:
    """A page saying what went wrong; `text` and `title` are already translated."""
    title = title or gettext("That did not work")
    return render(request, "authors/message.html", {"title": title, "text": text}, status)


def path_id(request: Request, name: str) -> int:
    """A row id from the path (an `int` route parameter); 404 beyond what a database holds."""
    value: int = request.path_params[name]
    if not 0 < value < 2**31:
        raise HTTPException(404)
    return value


def safe_next(value: str | None) -> str | None:
    """A page of the author area to return to after signing in; nothing else."""
    if value and SAFE_NEXT.match(value) and "//" not in value:
        return value
    return None


async def current_author(request: Request) -> Author | None:
    """The signed-in author, checked against the database once per request."""
    state = request.scope.setdefault("state", {})
    if "author" not in state:
        cookie = request.cookies.get(SESSION_COOKIE)
        author = None
        if cookie:
            async with db_session(request) as session:
                author = await accounts.load_session(session, request.app.state.signer, cookie)
        state["author"] = author
    found: Author | None = state["author"]
    return found


def to_sign_in(request: Request) -> Response:
    target = request.app.url_path_for("author_sign_in")
    if request.method == "GET" and safe_next(request.url.path):
        target = f"{target}?next={quote(request.url.path)}"
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


def signed_in(view: AuthorView) -> Callable[[Request], Awaitable[Response]]:
    """Run `view` for a signed-in author; send anyone else to the sign-in page.

    A letter the author has no part in is answered 404, like one that does not exist;
    an action their role does not allow, 403.
    """

    @functools.wraps(view)
    async def endpoint(request: Request) -> Response:
        author = await current_author(request)
        if author is None:
            return to_sign_in(request)
        if request.method == "POST":  # before anything else, even a redirect
            await read_author_form(request, max_fields=MAX_FIELDS)
        try:
            return await view(request, author)
        except LetterNotFound:
            raise HTTPException(404) from None
        except NotAllowed as refusal:
            return message(request, 403, refusal.message, gettext("Not allowed"))

    return endpoint


async def read_author_form(request: Request, max_fields: int = 20) -> dict[str, str]:
    """An author form's fields (as long as the body limit allows: letters are long)."""
    return await read_form(request, max_fields, settings_of(request).max_body_bytes)


async def posted_slug(request: Request, max_fields: int = 5) -> str:
    """For a form that is only a button: read it (it holds little more than its CSRF
    token); the slug of the letter it acts on."""
    await read_author_form(request, max_fields=max_fields)
    slug: str = request.path_params["slug"]
    return slug


def redirect_to(request: Request, route: str, slug: str, **flags: str) -> Response:
    """See other: the letter's author page `route`, with `flags` saying what was done."""
    url = request.app.url_path_for(route, slug=slug)
    if flags:
        url += "?" + "&".join(f"{key}={value}" for key, value in flags.items())
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


def _author_cookie(request: Request, response: Response, name: str, value: str, days: int) -> None:
    """Set one of the workspace's cookies: HttpOnly, SameSite=Lax, sent to /authors only."""
    response.set_cookie(
        name,
        value,
        max_age=days * 86400,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings_of(request).base_url.startswith("https"),
    )


def with_session(request: Request, response: Response, token: str) -> Response:
    value = accounts.cookie_value(request.app.state.signer, token)
    _author_cookie(request, response, SESSION_COOKIE, value, accounts.SESSION_DAYS)
    return response


def with_device(request: Request, response: Response, email: str) -> Response:
    """Mark this browser as one that signed in as `email` by link: its next requests for a
    link draw on a limit of their own (authors.accounts.device_key), which strangers
    cannot spend."""
    value = accounts.device_cookie(request.app.state.signer, email)
    _author_cookie(request, response, DEVICE_COOKIE, value, accounts.DEVICE_DAYS)
    return response


async def forget_letter(request: Request, slug: str) -> None:
    """Drop this process's public copies of a letter its authors just changed: the letter,
    the lists, and remembered "no such letter" answers (it may just have been published)."""
    async with db_session(request) as session:
        found = await letter_id(session, slug)
    store: cache.TTLCache = request.app.state.cache
    tags: list[object] = [cache.LISTS, cache.MISSING]
    if found is not None:
        tags.append(cache.letter_tag(found))
    store.forget(*tags)
    # Its signing rules too, and "no such letter" (it may just have been published).
    request.app.state.rules.forget(cache.MISSING, *([cache.rules_tag(found)] if found else []))
