"""Author accounts: sign in by emailed link or single sign-on, sign out, the dashboard and
the admin page; and the helpers every author page uses (letters/views/drafting.py and
moderation.py). Every author page checks the session on the server and sends no-store.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from letters import oidc, outbox
from letters.authors import accounts
from letters.authors.access import NotAllowed, my_letters, require_admin
from letters.forms import FieldError
from letters.i18n import N_, gettext
from letters.models import Author
from letters.public import LetterNotFound
from letters.ratelimit import RateLimited
from letters.security import BodyTooLarge, CSRFError, check_csrf
from letters.tokens import LinkUsed, TokenError
from letters.views.common import client_host, db_session, settings_of

SESSION_COOKIE = "letters_author"
COOKIE_PATH = "/authors"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
SAFE_NEXT = re.compile(r"\A/authors(/[a-z0-9\-/]*)?\Z")

AuthorView = Callable[[Request, Author], Awaitable[Response]]
# The most fields any author form has (the letter editor with its 50 domain rows).
MAX_FIELDS = 200


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """An author page: private, never stored by caches."""
    context.setdefault("author", request.scope.get("state", {}).get("author"))
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers=NO_STORE
    )
    return response


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
            await read_form(request, max_fields=MAX_FIELDS)
        try:
            return await view(request, author)
        except LetterNotFound:
            raise HTTPException(404) from None
        except NotAllowed as refusal:
            return message(request, 403, refusal.message, gettext("Not allowed"))

    return endpoint


async def read_form(request: Request, max_fields: int = 20) -> dict[str, str]:
    """The posted fields as text, after the CSRF check. Raises HTTPException 400 or 403."""
    try:
        form = await request.form(
            max_files=0,
            max_fields=max_fields,
            max_part_size=request.app.state.settings.max_body_bytes,
        )
    except BodyTooLarge:
        raise  # answered with 413 by BodyLimitMiddleware
    except Exception:  # malformed bodies of every kind: python-multipart raises many types
        raise HTTPException(400, N_("The form could not be read.")) from None
    try:
        check_csrf(request, form)
    except CSRFError:
        raise HTTPException(
            403, N_("This form has expired. Go back, reload the page and try again.")
        ) from None
    return {key: value for key, value in form.items() if isinstance(value, str)}


def send_soon(request: Request, *outbox_ids: int | None) -> BackgroundTask | None:
    """Send queued emails right after the response, when this process sends mail."""
    ids = [i for i in outbox_ids if i is not None]
    if not ids or not settings_of(request).mail_in_app:
        return None
    state = request.app.state

    async def send() -> None:
        for message_id in ids:
            await outbox.send_now(state.writer, state.mail, message_id)

    return BackgroundTask(send)


def _with_session(request: Request, response: Response, token: str) -> Response:
    response.set_cookie(
        SESSION_COOKIE,
        accounts.cookie_value(request.app.state.signer, token),
        max_age=accounts.SESSION_DAYS * 86400,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings_of(request).base_url.startswith("https"),
    )
    return response


# --- sign in and out ---------------------------------------------------------------------


def _sign_in_page(
    request: Request, status: int = 200, errors: dict[str, str] | None = None, **extra: Any
) -> Response:
    context = {
        "errors": errors or {},
        "form": extra.pop("form", {}),
        "next": safe_next(request.query_params.get("next")) or "",
        "sso": request.app.state.oidc is not None,
        **extra,
    }
    return render(request, "authors/sign_in.html", context, status)


async def sign_in(request: Request) -> Response:
    """GET: the sign-in form. POST: email a link if the address belongs to an author."""
    if request.method == "GET":
        if await current_author(request) is not None:
            return RedirectResponse(request.app.url_path_for("author_home"), 303)
        return _sign_in_page(request, signed_out="signed_out" in request.query_params)
    form = await read_form(request)
    try:
        async with db_session(request, write=True) as session:
            outbox_id = await accounts.request_link(
                session,
                form.get("email"),
                client_host=client_host(request),
                signer=request.app.state.signer,
                settings=settings_of(request),
                next_path=safe_next(form.get("next")),
            )
    except FieldError as error:
        return _sign_in_page(request, 422, {error.field: error.message}, form=form)
    except RateLimited as limited:
        response = message(
            request,
            429,
            gettext("Too many sign-in emails were asked for. Please wait and try again."),
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    return RedirectResponse(
        request.app.url_path_for("author_sign_in_sent"),
        status_code=303,
        background=send_soon(request, outbox_id),
    )


async def sign_in_sent(request: Request) -> Response:
    return render(request, "authors/sign_in_sent.html", {"minutes": accounts.LINK_MAX_AGE // 60})


async def link_page(request: Request) -> Response:
    """GET (and HEAD) of an emailed sign-in link: a button. Never uses the link."""
    token = request.path_params["token"]
    async with db_session(request) as session:
        try:
            view = await accounts.inspect_link(session, token, request.app.state.signer)
        except TokenError as error:
            return _link_problem(request, error)
    return render(
        request,
        "authors/sign_in_confirm.html",
        {"email": view.author.email, "next": safe_next(request.query_params.get("next")) or ""},
    )


def _link_problem(request: Request, error: TokenError) -> Response:
    text = error.message
    if isinstance(error, LinkUsed):
        text = gettext("This sign-in link has already been used. Ask for a new one.")
    # The language links lead to the sign-in page: this page never repeats the link's token.
    context = {"text": text, "here": _sign_in_path(request)}
    return render(request, "authors/link_problem.html", context, 400)


async def link_confirm(request: Request) -> Response:
    """POST from the button: use the link, once, and start a session."""
    token = request.path_params["token"]
    form = await read_form(request, max_fields=5)
    async with db_session(request, write=True) as session:
        try:
            _, session_token = await accounts.use_link(session, token, request.app.state.signer)
        except TokenError as error:
            return _link_problem(request, error)
    target = safe_next(form.get("next")) or request.app.url_path_for("author_home")
    return _with_session(request, RedirectResponse(target, 303, headers=NO_STORE), session_token)


async def sign_out(request: Request) -> Response:
    """POST: end this browser's session (or, with `everywhere`, all of the author's)."""
    form = await read_form(request, max_fields=5)
    cookie = request.cookies.get(SESSION_COOKIE)
    author = await current_author(request)
    async with db_session(request, write=True) as session:
        if author is not None and form.get("everywhere") == "1":
            await accounts.end_all_sessions(session, author.id)  # type: ignore[arg-type]
        else:
            await accounts.end_session(session, request.app.state.signer, cookie)
    target = request.app.url_path_for("author_sign_in") + "?signed_out=1"
    response = RedirectResponse(target, 303, headers=NO_STORE)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


def _sign_in_path(request: Request) -> str:
    # Where the language links lead from single sign-on's pages: never back to the
    # callback, whose one-time code is used up (and must stay out of addresses and logs).
    return str(request.app.url_path_for("author_sign_in"))


async def oidc_start(request: Request) -> Response:
    client = request.app.state.oidc
    if client is None:
        raise HTTPException(404)
    try:
        return await oidc.start(client, request, settings_of(request))
    except oidc.SignOnFailed as error:
        return _sign_in_page(request, 503, {"sso": str(error)}, here=_sign_in_path(request))


async def oidc_callback(request: Request) -> Response:
    client = request.app.state.oidc
    if client is None:
        raise HTTPException(404)
    try:
        identity = await oidc.finish(client, request)
    except oidc.SignOnFailed as error:
        return _sign_in_page(request, 400, {"sso": str(error)}, here=_sign_in_path(request))
    async with db_session(request, write=True) as session:
        try:
            author = await accounts.author_for_identity(session, identity)
        except accounts.NotAnAuthor:
            return _sign_in_page(
                request,
                403,
                {
                    "sso": gettext(
                        "You signed in, but you have no author account here. An admin can "
                        "add you, or a letter's owner can invite you."
                    )
                },
                here=_sign_in_path(request),
            )
        token = await accounts.start_session(session, author, "oidc")
    response = RedirectResponse(request.app.url_path_for("author_home"), 303, headers=NO_STORE)
    return _with_session(request, response, token)


# --- dashboard and admin -------------------------------------------------------------------


@signed_in
async def home(request: Request, author: Author) -> Response:
    async with db_session(request) as session:
        letters = await my_letters(session, author)
    return render(request, "authors/dashboard.html", {"letters": letters})


@signed_in
async def admin(request: Request, author: Author) -> Response:
    """Admins allow new authors, and stop them starting letters."""
    require_admin(author)
    errors: dict[str, str] = {}
    status = 200
    notice = ""
    if request.method == "POST":
        form = await read_form(request)
        async with db_session(request, write=True) as session:
            try:
                if form.get("action") == "add":
                    email = accounts.normalize_email(form.get("email"))
                    await accounts.add_author(session, email, can_create=True)
                    notice = gettext("%(email)s can now sign in and start letters.", email=email)
                else:
                    target = form.get("author_id", "")
                    if not target.isascii() or not target.isdigit() or len(target) > 9:
                        raise HTTPException(400, N_("Choose an author."))
                    allowed = form.get("action") == "allow"
                    changed = await accounts.set_can_create(session, int(target), allowed)
                    if changed is None:
                        raise HTTPException(404)
                    if changed.can_create:
                        notice = gettext("%(email)s can start letters.", email=changed.email)
                    else:
                        notice = gettext(
                            "%(email)s can no longer start letters.", email=changed.email
                        )
                await session.commit()
            except FieldError as error:
                errors[error.field] = error.message
                status = 422
    async with db_session(request) as session:
        authors = await accounts.list_authors(session)
    context = {"authors": authors, "errors": errors, "notice": notice}
    return render(request, "authors/admin.html", context, status)
