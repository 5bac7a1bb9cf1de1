"""Signer control: ask for a manage link, open it (GET reads), use it (POST changes).

As with signing links, mail scanners open every link in an email, so the GET never uses
or changes anything, and a used link says no more than that it was used.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.forms import REVEAL_THRESHOLDS, Details, FieldError
from letters.i18n import N_, gettext, ngettext
from letters.mail.compose import hours
from letters.ratelimit import RateLimited
from letters.record import names, signer_control
from letters.record.counting import SignatureGone
from letters.record.signer_control import Action, ManageView, NothingToChange
from letters.record.signing import LetterClosed
from letters.sealing import Keyring
from letters.tokens import LinkUsed, TokenError
from letters.web.common import (
    NO_STORE,
    SEND_AGAIN,
    FormExpired,
    FormUnreadable,
    db_session,
    forget_letter,
    link_problem,
    read_form,
    render,
    requester,
    run_job_later,
    settings_of,
    snapshot_or_404,
    text_fields,
    too_many,
)
from letters.web.security import csrf_token, fetch_site

TEMPLATE = "manage/problem.html"
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
EXPIRED_PAGE = N_(
    "This page expired before you pressed the button. Open the link from your email again."
)
NO_ACTION = N_("Choose what to do with your signature.")
MESSAGES = {
    LinkUsed: USED,
    LetterClosed: CLOSED,
    SignatureGone: GONE,
    FormExpired: EXPIRED_PAGE,
}


def too_many_message(minutes: int) -> str:
    return ngettext(
        "Too many requests came from here or for this address. "
        "Please wait %(minutes)s minute and try again.",
        "Too many requests came from here or for this address. "
        "Please wait %(minutes)s minutes and try again.",
        minutes,
        minutes=minutes,
    )


async def _request_page(
    request: Request,
    slug: str,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    letter = (await snapshot_or_404(request, slug)).letter
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
    try:
        email = (await read_form(request)).get("email")
    except FormExpired as refused:
        if fetch_site(request) is not None:
            raise
        # A browser that does not say where its forms come from: the form again, with a token.
        form = {"email": refused.fields.get("email", "")}
        return await _request_page(request, slug, form, {"manage_email": gettext(SEND_AGAIN)}, 403)
    try:
        async with db_session(request, write=True) as session:
            job = await signer_control.request_link(
                session, slug=slug, email=email, requester=requester(request)
            )
    except FieldError as error:
        errors = {"manage_email": error.message}
        return await _request_page(request, slug, {"email": email or ""}, errors, 422)
    except RateLimited as limited:
        return too_many(request, limited, too_many_message)
    run_job_later(request, job)
    return RedirectResponse(request.app.url_path_for("manage_sent", slug=slug), status_code=303)


async def link_sent(request: Request) -> Response:
    letter = (await snapshot_or_404(request, request.path_params["slug"])).letter
    settings = settings_of(request)
    subject = gettext(settings.mail_manage_subject)  # as the email has it
    context = {"letter": letter, "hours": hours(settings.link_max_age), "subject": subject}
    return render(request, "manage/sent.html", context)


def _page(
    request: Request,
    view: ManageView,
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
        "closed": view.letter.status == "closed",
        "keeps_hidden_name": not signature.show_name and names.keeps_a_name(signature),
    }
    return render(request, "manage/manage.html", context, status, NO_STORE)


async def _inspect(request: Request, token: str) -> ManageView:
    async with db_session(request) as session:
        return await signer_control.inspect(
            session, token, request.app.state.signer, settings_of(request)
        )


async def manage_page(request: Request) -> Response:
    """GET (and HEAD): show the signature and what can be done. Never changes anything."""
    try:
        view = await _inspect(request, request.path_params["token"])
        _check_usable(view)
    except (TokenError, SignatureGone) as error:
        # A used link says no more than that: whoever reads the mailbox later learns
        # nothing else.
        return link_problem(request, TEMPLATE, error, MESSAGES)
    return _page(request, view)


def _check_usable(view: ManageView) -> None:
    if view.used:
        raise LinkUsed
    if view.signature is None:
        raise SignatureGone


FORM_FIELDS = ("action", "name", "title", "show_name", "reveal_at")


def _keeping_hidden_name(data: dict[str, Any], view: ManageView, keys: Keyring) -> dict[str, Any]:
    """The page never shows a hidden name, so empty name and title fields keep the stored
    ones (opened here, in memory)."""
    signature = view.signature
    if signature is None or signature.show_name:
        return data
    name, title = names.of_signature(keys, signature)
    kept = dict(data)
    if not (data.get("name") or "").strip():
        kept["name"] = name
    if not (data.get("title") or "").strip():
        kept["title"] = title
    return kept


async def manage_action(request: Request) -> Response:
    """POST from the manage page: one action, and the link is used up."""
    token = request.path_params["token"]
    try:
        data = text_fields(await read_form(request, 10, 4096), FORM_FIELDS)
        action = _action(data)
        details = None
        if action == Action.update:
            view = await _inspect(request, token)
            _check_usable(view)
            try:
                details = _details(data, view, settings_of(request).keys)
            except FieldError as error:
                return _page(request, view, 422, {error.field: error.message}, data)
        async with db_session(request, write=True) as session:
            result = await signer_control.apply(
                session, token, action, details, request.app.state.signer, settings_of(request)
            )
    except NothingToChange:
        return _page(request, await _inspect(request, token), notice=gettext(UNCHANGED))
    except (FormExpired, FormUnreadable, TokenError, LetterClosed, SignatureGone) as error:
        return link_problem(request, TEMPLATE, error, MESSAGES)
    forget_letter(request, result.letter.id)
    if result.letter.status == "draft":
        # A founding signature, before launch: no address that names the letter.
        context = {"action": result.action, "here": request.app.url_path_for("index")}
        return render(request, "founding/manage_done.html", context, headers=NO_STORE)
    context = {
        "letter": result.letter,
        "action": result.action,
        "signature": result.signature,
        "revealed": result.revealed,
        # The link is used up: the language links lead to the letter instead.
        "here": request.app.url_path_for("letter", slug=result.letter.slug),
    }
    return render(request, "manage/done.html", context, headers=NO_STORE)


class NoAction(FormUnreadable):
    """The form named no action (a 400 with its own message)."""

    def __init__(self) -> None:
        super().__init__()
        self.detail = NO_ACTION


def _action(data: dict[str, str | None]) -> Action:
    try:
        return Action(data["action"] or "")
    except ValueError:
        raise NoAction from None


def _details(data: dict[str, str | None], view: ManageView, keys: Keyring) -> Details:
    """The new details of an update; FieldError if they are wrong or the authors forbid them."""
    assert view.signature is not None
    kept = _keeping_hidden_name(data, view, keys)
    details = Details.parse(kept, view.letter.ask_title)
    if view.signature.name_hidden_by_authors and (details.show_name or details.reveal_at):
        raise FieldError("show_name", HIDDEN_BY_AUTHORS)
    return details


MAX_RECEIPT = 100
NO_RECEIPT = N_("Paste the receipt shown when you confirmed your signature.")


async def receipt_page(request: Request) -> Response:
    """GET: the form; POST: withdraw or hide a name with the signer's receipt.

    The receipt travels in the body only, never in an address. The answer is the same
    whether or not it matched a signature.
    """
    slug = request.path_params["slug"]
    letter = (await snapshot_or_404(request, slug)).letter
    context: dict[str, Any] = {
        "letter": letter,
        "csrf": csrf_token(request),
        "receipt": "",
        "action": "withdraw",
        "error": None,
        "done": False,
    }
    if request.method != "POST":
        return render(request, "manage/receipt.html", context, headers=NO_STORE)
    try:
        data = text_fields(await read_form(request, 5, 4096), ("receipt", "action"))
    except (FormExpired, FormUnreadable) as error:
        return link_problem(request, TEMPLATE, error, MESSAGES)
    receipt = (data["receipt"] or "").strip()
    action = Action.hide if data["action"] == Action.hide else Action.withdraw
    context |= {"receipt": receipt[:MAX_RECEIPT], "action": action}
    if not receipt or len(receipt) > MAX_RECEIPT:
        context["error"] = gettext(NO_RECEIPT)
        return render(request, "manage/receipt.html", context, 422, NO_STORE)
    try:
        async with db_session(request, write=True) as session:
            changed = await signer_control.use_receipt(
                session, slug=slug, receipt=receipt, action=action, requester=requester(request)
            )
    except RateLimited as limited:
        return too_many(request, limited, too_many_message)
    if changed is not None:
        forget_letter(request, letter.id)
    context |= {"done": True, "receipt": ""}
    return render(request, "manage/receipt.html", context, headers=NO_STORE)


routes = [
    Route("/letters/{slug}/manage", request_page, methods=["GET"], name="manage_ask"),
    Route(
        "/letters/{slug}/manage/receipt",
        receipt_page,
        methods=["GET", "POST"],
        name="manage_receipt",
    ),
    Route("/letters/{slug}/manage", request_link, methods=["POST"], name="manage_request"),
    Route("/letters/{slug}/manage/sent", link_sent, name="manage_sent"),
    Route("/manage/{token}", manage_page, methods=["GET"], name="manage"),
    Route("/manage/{token}", manage_action, methods=["POST"], name="manage_action"),
]
