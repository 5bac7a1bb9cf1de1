"""Signer control: ask for a manage link, open it (GET reads), use it (POST changes).

As with signing links, mail scanners open every link in an email, so the GET never uses
or changes anything, and a used link says no more than that it was used.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from letters import manage
from letters.forms import REVEAL_THRESHOLDS, Details, FieldError
from letters.i18n import N_, gettext, ngettext
from letters.public import LetterNotFound
from letters.ratelimit import RateLimited
from letters.security import BodyTooLarge, CSRFError, check_csrf, csrf_token
from letters.signing import LetterClosed
from letters.tokens import LinkUsed, TokenError
from letters.views.common import (
    client_host,
    db_session,
    deliver,
    forget_letter,
    manage_email,
    settings_of,
)
from letters.views.letters import _read_form, _snapshot_or_404, render

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
HIDDEN_BY_AUTHORS = (
    "The letter's authors hid the name of this signature, so it cannot be shown on this "
    "letter. Your signature still counts, as hidden."
)
USED = N_("This link has already been used. Ask for a new one on the letter page if you need to.")
CLOSED = N_(
    "This letter has closed, so its signatures can no longer be changed. "
    "You can still withdraw your signature or hide your name."
)
GONE = N_("The signature this link was for has been withdrawn or removed, so nothing was changed.")
UNCHANGED = N_("Nothing changed: your signature already looks like that.")


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers=NO_STORE
    )
    return response


def _problem(request: Request, message: str, status: int, expired: bool = False) -> Response:
    # The language links lead home: a page about an unusable link never repeats its token.
    context = {"message": message, "expired": expired, "here": request.app.url_path_for("index")}
    return _render(request, "manage/problem.html", context, status)


async def _request_page(
    request: Request,
    slug: str,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    letter = (await _snapshot_or_404(request, slug)).letter
    context = {
        "letter": letter,
        "csrf": csrf_token(request),
        "manage_form": form or {},
        "manage_errors": errors or {},
    }
    return render(request, "manage/request.html", context, status=status)


async def request_page(request: Request) -> Response:
    """GET: the form asking for a manage link on its own (linked from closed letters)."""
    return await _request_page(request, request.path_params["slug"])


async def request_link(request: Request) -> Response:
    """POST from the letter page: email a manage link if that address signed.

    The answer is the same redirect whether or not it did.
    """
    slug = request.path_params["slug"]
    form = await _read_form(request)
    email = form.get("email")
    try:
        async with db_session(request, write=True) as session:
            link = await manage.request_link(
                session,
                slug=slug,
                email=email if isinstance(email, str) else None,
                client_host=client_host(request),
                signer=request.app.state.signer,
                settings=settings_of(request),
                compose=manage_email(request),
            )
    except LetterNotFound:
        raise HTTPException(404) from None
    except FieldError as error:
        form_values = {"email": email if isinstance(email, str) else ""}
        errors = {"manage_email": error.message}
        return await _request_page(request, slug, form_values, errors, 422)
    except RateLimited as limited:
        minutes = max(1, limited.retry_after // 60)
        response = render(
            request,
            "errors/error.html",
            {
                "status": 429,
                "message": ngettext(
                    "Too many requests came from here or for this address. "
                    "Please wait %(minutes)s minute and try again.",
                    "Too many requests came from here or for this address. "
                    "Please wait %(minutes)s minutes and try again.",
                    minutes,
                    minutes=minutes,
                ),
                "here": request.app.url_path_for("letter", slug=slug),
            },
            status=429,
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    return RedirectResponse(
        request.app.url_path_for("manage_sent", slug=slug),
        status_code=303,
        background=deliver(request, link) if link is not None else None,
    )


async def link_sent(request: Request) -> Response:
    letter = (await _snapshot_or_404(request, request.path_params["slug"])).letter
    hours = max(1, round(settings_of(request).link_max_age / 3600))
    subject = gettext(settings_of(request).mail_manage_subject)  # as the email has it
    return render(
        request, "manage/sent.html", {"letter": letter, "hours": hours, "subject": subject}
    )


def _page(
    request: Request,
    view: manage.ManageView,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    signature = view.signature
    assert signature is not None
    if form is None:
        # A hidden name is never printed, not even here: whoever reads the signer's mailbox
        # may open this link before they do.
        shown = signature.show_name
        form = {
            "name": signature.name if shown else "",
            "title": signature.title if shown else "",
            "show_name": "1" if shown else "0",
            "reveal_at": str(signature.reveal_at or ""),
        }
    context = {
        "letter": view.letter,
        "signature": signature,
        "organization_count": view.organization_count,
        "thresholds": REVEAL_THRESHOLDS,
        "form": form,
        "errors": errors or {},
        "notice": notice,
        "closed": view.letter.status != "published",
        "keeps_hidden_name": not signature.show_name and bool(signature.name or signature.title),
    }
    return _render(request, "manage/manage.html", context, status)


async def _inspect(request: Request, token: str) -> manage.ManageView:
    async with db_session(request) as session:
        return await manage.inspect(session, token, request.app.state.signer, settings_of(request))


async def manage_page(request: Request) -> Response:
    """GET (and HEAD): show the signature and what can be done. Never changes anything."""
    try:
        view = await _inspect(request, request.path_params["token"])
    except TokenError as error:
        return _problem(request, error.message, 400, error.code == "expired_token")
    if view.used:
        # Say no more than that: whoever reads the mailbox later learns nothing else.
        return _problem(request, gettext(USED), 400)
    if view.signature is None:
        return _problem(request, gettext(GONE), 409)
    return _page(request, view)


FORM_FIELDS = ("action", "name", "title", "show_name", "reveal_at")


def _keeping_hidden_name(data: dict[str, Any], view: manage.ManageView) -> dict[str, Any]:
    """The page never shows a hidden name, so empty name and title fields keep the stored ones."""
    signature = view.signature
    if signature is None or signature.show_name:
        return data
    kept = dict(data)
    if not (data.get("name") or "").strip():
        kept["name"] = signature.name
    if not (data.get("title") or "").strip():
        kept["title"] = signature.title
    return kept


async def manage_action(request: Request) -> Response:
    """POST from the manage page: one action, and the link is used up."""
    token = request.path_params["token"]
    try:
        form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        check_csrf(request, form)
    except BodyTooLarge:
        raise  # answered with 413 by BodyLimitMiddleware
    except CSRFError:
        return _problem(
            request,
            gettext(
                "This page expired before you pressed the button. "
                "Open the link from your email again."
            ),
            403,
        )
    except Exception:  # a malformed form body
        return _problem(request, gettext("The form could not be read."), 400)
    values = {key: form.get(key) for key in FORM_FIELDS}
    data = {key: value if isinstance(value, str) else None for key, value in values.items()}
    try:
        action = manage.Action(data["action"] or "")
    except ValueError:
        return _problem(request, gettext("Choose what to do with your signature."), 400)
    signer, settings = request.app.state.signer, settings_of(request)
    details = None
    if action == manage.Action.update:
        try:
            view = await _inspect(request, token)
        except TokenError as error:
            return _problem(request, error.message, 400, error.code == "expired_token")
        if view.used or view.signature is None:
            return (
                _problem(request, gettext(USED), 400)
                if view.used
                else _problem(request, gettext(GONE), 409)
            )
        try:
            details = Details.parse(_keeping_hidden_name(data, view), view.letter.ask_title)
        except FieldError as error:
            return _page(request, view, 422, {error.field: error.message}, data)
        if view.signature.name_hidden_by_authors and (details.show_name or details.reveal_at):
            return _page(request, view, 422, {"show_name": HIDDEN_BY_AUTHORS}, data)
    async with db_session(request, write=True) as session:
        try:
            result = await manage.apply(session, token, action, details, signer, settings)
        except LinkUsed:
            return _problem(request, gettext(USED), 400)
        except TokenError as error:
            return _problem(request, error.message, 400, error.code == "expired_token")
        except LetterClosed:
            return _problem(request, gettext(CLOSED), 409)
        except manage.SignatureGone:
            return _problem(request, gettext(GONE), 409)
        except manage.NothingToChange:
            unchanged = True
        else:
            unchanged = False
    if unchanged:
        return _page(request, await _inspect(request, token), notice=gettext(UNCHANGED))
    forget_letter(request, result.letter.slug)
    return _render(
        request,
        "manage/done.html",
        {
            "letter": result.letter,
            "action": result.action,
            "signature": result.signature,
            "revealed": result.revealed,
            # The link is used up: the language links lead to the letter instead.
            "here": request.app.url_path_for("letter", slug=result.letter.slug),
        },
    )
