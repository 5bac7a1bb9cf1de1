"""A founding round's secret page: the draft's text and its signing form, nothing else.

It lives at /founding/{token}, never at /letters/{slug}, so no public cache ever holds a
draft; every answer is private, never stored, sent with no referrer and marked noindex.
A link that is not an open round's (replaced, closed, launched, forged) is a plain 404.
Signing goes through the same request as a public letter's (letters.record.signing), and
the magic link through the same confirmation page (letters.web.verify).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letters import i18n
from letters.forms import FieldError
from letters.mail.compose import hours
from letters.ratelimit import RateLimited
from letters.record import founding, signer_control
from letters.record.public import LetterNotFound
from letters.record.signing import LetterClosed, SigningRules
from letters.web.common import (
    NO_STORE,
    db_session,
    read_form,
    render,
    requester,
    run_job_later,
    send_soon,
    settings_of,
    sign_request,
    text_fields,
)
from letters.web.pages import FORM_FIELDS, too_many_message
from letters.web.security import csrf_token

# Private, never stored, never sent on as a referrer, never indexed.
HEADERS = {**NO_STORE, "X-Robots-Tag": "noindex, nofollow"}


async def _round(request: Request, token: str) -> founding.OpenRound:
    try:
        async with db_session(request) as session:
            return await founding.open_round_of(session, request.app.state.signer, token)
    except LetterNotFound:
        raise HTTPException(404) from None


def _page(
    request: Request,
    token: str,
    found: founding.OpenRound,
    form: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    **more: Any,
) -> Response:
    context = more | {
        "letter": found.letter,
        "domains": found.domains,
        "launch_at": found.founding.launch_at,
        "form": form,
        "errors": errors,
        "csrf": csrf_token(request),
        "sign_action": request.app.url_path_for("founding_sign", token=token),
        "manage_action": request.app.url_path_for("founding_manage", token=token),
        "here": request.app.url_path_for("founding", token=token),
    }
    return render(request, "founding/page.html", context, status, HEADERS)


def _too_many(request: Request, token: str, limited: RateLimited) -> Response:
    message = too_many_message(max(1, limited.retry_after // 60))
    here = request.app.url_path_for("founding", token=token)
    context = {"status": 429, "message": message, "here": here}
    headers = HEADERS | {"Retry-After": str(limited.retry_after)}
    return render(request, "errors/error.html", context, 429, headers)


def _email_sent(
    request: Request, token: str, found: founding.OpenRound, template: str, subject: str
) -> Response:
    """The page saying an email is on its way, and what its `subject` (as set) will be."""
    context = {
        "letter": found.letter,
        "hours": hours(settings_of(request).link_max_age),
        "subject": i18n.gettext(subject),
        "here": request.app.url_path_for("founding", token=token),
    }
    return render(request, template, context, 200, HEADERS)


async def founding_page(request: Request) -> Response:
    token = request.path_params["token"]
    return _page(request, token, await _round(request, token), {}, {})


async def founding_sign(request: Request) -> Response:
    token = request.path_params["token"]
    data = text_fields(await read_form(request), FORM_FIELDS)
    found = await _round(request, token)
    rules = SigningRules(found.letter, found.domains, founding=True)
    try:
        link = await sign_request(request, found.letter.slug, data, rules)
    except LetterClosed:
        raise HTTPException(404) from None
    except FieldError as error:
        return _page(request, token, found, data, {error.field: error.message}, 422)
    except RateLimited as limited:
        return _too_many(request, token, limited)
    subject = settings_of(request).mail_subject
    response = _email_sent(request, token, found, "founding/check_email.html", subject)
    response.background = send_soon(request, link.leased or link.outbox_id)
    return response


async def founding_manage(request: Request) -> Response:
    """Email a manage link (to withdraw or change a founding signature) if that address
    signed in this round; the answer is the same whether or not it did."""
    token = request.path_params["token"]
    email = (await read_form(request)).get("email")
    found = await _round(request, token)
    settings = settings_of(request)
    try:
        async with db_session(request, write=True) as session:
            job = await signer_control.request_link(
                session,
                slug=found.letter.slug,
                email=email,
                requester=requester(request),
                letter=found.letter,
            )
    except FieldError as error:
        errors = {"manage_email": error.message}
        context: dict[str, Any] = {"manage_form": {"email": email or ""}, "manage_errors": errors}
        return _page(request, token, found, {}, {}, 422, **context)
    except RateLimited as limited:
        return _too_many(request, token, limited)
    run_job_later(request, job)
    subject = settings.mail_manage_subject
    return _email_sent(request, token, found, "founding/manage_sent.html", subject)


routes = [
    Route("/founding/{token}", founding_page, name="founding"),
    Route("/founding/{token}/sign", founding_sign, methods=["POST"], name="founding_sign"),
    Route("/founding/{token}/manage", founding_manage, methods=["POST"], name="founding_manage"),
]
