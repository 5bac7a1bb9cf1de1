"""Signing in and out: an emailed link (GET shows a button, only POST uses it) or single
sign-on."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.authors import accounts
from letters.forms import FieldError
from letters.i18n import gettext
from letters.ratelimit import RateLimited
from letters.tokens import LinkUsed, TokenError
from letters.web import oidc
from letters.web.common import NO_STORE, db_session, requester, run_job_later, settings_of
from letters.web.workspace.session import (
    COOKIE_PATH,
    DEVICE_COOKIE,
    SESSION_COOKIE,
    current_author,
    message,
    read_author_form,
    render,
    safe_next,
    with_device,
    with_session,
)


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
    form = await read_author_form(request)
    try:
        async with db_session(request, write=True) as session:
            outbox_id = await accounts.request_link(
                session,
                form.get("email"),
                requester(request),
                next_path=safe_next(form.get("next")),
                device=request.cookies.get(DEVICE_COOKIE),
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
    run_job_later(request, outbox_id)
    return RedirectResponse(request.app.url_path_for("author_sign_in_sent"), status_code=303)


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
    form = await read_author_form(request, max_fields=5)
    async with db_session(request, write=True) as session:
        try:
            author, session_token = await accounts.use_link(
                session, token, request.app.state.signer
            )
        except TokenError as error:
            return _link_problem(request, error)
    target = safe_next(form.get("next")) or request.app.url_path_for("author_home")
    # This browser proved it reads the address's mail.
    response = with_device(request, RedirectResponse(target, 303, headers=NO_STORE), author.email)
    return with_session(request, response, session_token)


async def sign_out(request: Request) -> Response:
    """POST: end this browser's session (or, with `everywhere`, all of the author's)."""
    form = await read_author_form(request, max_fields=5)
    cookie = request.cookies.get(SESSION_COOKIE)
    author = await current_author(request)
    async with db_session(request, write=True) as session:
        if author is not None and form.get("everywhere") == "1":
            await accounts.end_all_sessions(session, author.id)
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
    return with_session(request, response, token)


routes = [
    Route("/authors/sign-in", sign_in, methods=["GET", "POST"], name="author_sign_in"),
    Route("/authors/sign-in/sent", sign_in_sent, name="author_sign_in_sent"),
    # As for signers: GET shows a button, only POST uses the link.
    Route("/authors/sign-in/{token}", link_page, methods=["GET"], name="author_link"),
    Route("/authors/sign-in/{token}", link_confirm, methods=["POST"], name="author_link_confirm"),
    Route("/authors/sign-out", sign_out, methods=["POST"], name="author_sign_out"),
    Route("/authors/oidc/start", oidc_start, name="author_oidc_start"),
    Route("/authors/oidc/callback", oidc_callback, name="author_oidc_callback"),
]
