"""The page a magic link opens: GET shows a button, only POST confirms.

Mail scanners such as Microsoft Safe Links fetch every link in an email before the person
does, so the GET must never use up or confirm anything.

Reloading the confirmed page posts again, to a link now used. The browser that confirmed
holds a cookie for that link's address alone (signed, naming the letter, nothing about the
signer), so its reload says "your signature is counted"; anyone else who opens or posts
the used link (an employer reading the mailbox) still learns only that it was used.
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from letters.authors.rounds import in_zone
from letters.i18n import N_
from letters.models import LetterStatus
from letters.record.founding import Founded
from letters.record.signing import LetterClosed, confirm, inspect_link
from letters.tokens import LinkUsed, TokenError
from letters.web.common import (
    NO_STORE,
    FormExpired,
    FormUnreadable,
    credit_confirmation,
    db_session,
    forget_letter,
    in_transaction,
    link_problem,
    read_form,
    render,
    settings_of,
    snapshot_or_404,
)

TEMPLATE = "signatures/link_problem.html"
USED = N_(
    "This link has already been used. If it was yours, your signature is counted; "
    "the letter page shows the current count."
)
CLOSED = N_("This letter has closed and no longer takes signatures.")
EXPIRED_PAGE = N_(
    "This page expired before you pressed the button. Open the link from your email again."
)
# What a signer reads for each way a link can fail (others say their own message).
MESSAGES = {LinkUsed: USED, LetterClosed: CLOSED, FormExpired: EXPIRED_PAGE}
CONFIRMED_COOKIE = "confirmed"
CONFIRMED_SALT = "letters.confirmed-here"
CONFIRMED_SECONDS = 24 * 3600


def _link_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _confirmed_here(request: Request, token: str) -> str | None:
    """The slug of the letter this browser confirmed with `token`, from its cookie."""
    value = request.cookies.get(CONFIRMED_COOKIE)
    if not value:
        return None
    serializer = request.app.state.signer.timed(CONFIRMED_SALT)
    try:
        link, slug = serializer.loads(value, max_age=CONFIRMED_SECONDS)
    except (BadSignature, ValueError, TypeError):
        return None
    return slug if link == _link_id(token) and isinstance(slug, str) else None


async def _counted_page(request: Request, slug: str) -> Response:
    """The confirmed page again, without the receipt (it was shown once and not kept)."""
    letter = (await snapshot_or_404(request, slug)).letter
    context = {
        "letter": letter,
        "again": True,
        "share_url": settings_of(request).base_url + request.app.url_path_for("letter", slug=slug),
        "here": request.app.url_path_for("letter", slug=slug),
    }
    return render(request, "signatures/confirmed.html", context, headers=NO_STORE)


async def verify_page(request: Request) -> Response:
    """GET (and HEAD): show what would be confirmed and a button. Never changes anything."""
    token = request.path_params["token"]
    async with db_session(request) as session:
        try:
            view = await inspect_link(
                session, token, request.app.state.signer, settings_of(request)
            )
        except TokenError as error:
            return link_problem(request, TEMPLATE, error, MESSAGES)
    if view.used:
        if slug := _confirmed_here(request, token):
            return await _counted_page(request, slug)
        # Say no more than that: whoever opens an old link (an employer reading the
        # mailbox, say) learns nothing about which letter it was for.
        return link_problem(request, TEMPLATE, LinkUsed(), MESSAGES)
    if view.letter.status != LetterStatus.published and view.founding is None:
        return link_problem(request, TEMPLATE, LetterClosed(view.letter.id), MESSAGES)
    context = {
        "letter": view.letter,
        "pending": view.pending,
        "name": view.name,
        "title": view.title,
    }
    if view.founding is not None:
        # A draft's founding round: no address that names the letter, and never indexed.
        context["here"] = request.app.url_path_for("index")
        headers = NO_STORE | {"X-Robots-Tag": "noindex, nofollow"}
        return render(request, "signatures/confirm.html", context, headers=headers)
    return render(request, "signatures/confirm.html", context, headers=NO_STORE)


async def verify_confirm(request: Request) -> Response:
    """POST from the confirmation page's button: verify and count the signature."""
    token = request.path_params["token"]
    try:
        await read_form(request, max_fields=5, max_part_size=4096)
        signer, settings = request.app.state.signer, settings_of(request)
        result = await in_transaction(
            request,
            lambda session: confirm(session, token, signer, settings, founding_round=True),
        )
    except LinkUsed as error:
        if slug := _confirmed_here(request, token):
            return await _counted_page(request, slug)  # a reload of the confirmed page
        return link_problem(request, TEMPLATE, error, MESSAGES)
    except (FormExpired, FormUnreadable, TokenError, LetterClosed) as error:
        return link_problem(request, TEMPLATE, error, MESSAGES)
    if isinstance(result, Founded):
        return _founded(request, result)
    forget_letter(request, result.letter.id)
    credit_confirmation(request, result)
    slug = result.letter.slug
    context = {
        "letter": result.letter,
        "signature": result.signature,
        "outcome": result.outcome,
        "receipt": result.receipt,
        "share_url": settings.base_url + request.app.url_path_for("letter", slug=slug),
        # The link is used up: the language links lead to the letter instead.
        "here": request.app.url_path_for("letter", slug=slug),
    }
    response = render(request, "signatures/confirmed.html", context, headers=NO_STORE)
    response.set_cookie(
        CONFIRMED_COOKIE,
        signer.timed(CONFIRMED_SALT).dumps([_link_id(token), slug]),
        max_age=CONFIRMED_SECONDS,
        path=request.app.url_path_for("verify", token=token),
        secure=settings.base_url.startswith("https"),
        httponly=True,
        samesite="strict",
    )
    return response


def _founded(request: Request, result: Founded) -> Response:
    """A founding signer's confirmation: when the letter is planned to go public."""
    launch = in_zone(result.launch_at, result.time_zone) if result.launch_at else None
    context = {
        "letter": result.letter,
        "signature": result.signature,
        "outcome": result.outcome,
        "receipt": result.receipt,
        "launch": launch,
        "here": request.app.url_path_for("index"),
    }
    headers = NO_STORE | {"X-Robots-Tag": "noindex, nofollow"}
    return render(request, "founding/confirmed.html", context, headers=headers)


routes = [
    # Two routes, not one view switching on the method: only a POST may confirm, and
    # GET and HEAD (which mail scanners send) can never fall through to it.
    Route("/verify/{token}", verify_page, methods=["GET"], name="verify"),
    Route("/verify/{token}", verify_confirm, methods=["POST"], name="verify_confirm"),
]
