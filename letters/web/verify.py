"""The page a magic link opens: GET shows a button, only POST confirms.

Mail scanners such as Microsoft Safe Links fetch every link in an email before the person
does, so the GET must never use up or confirm anything.
"""

from __future__ import annotations

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
    except (FormExpired, FormUnreadable, TokenError, LetterClosed) as error:
        return link_problem(request, TEMPLATE, error, MESSAGES)
    if isinstance(result, Founded):
        return _founded(request, result)
    forget_letter(request, result.letter.id)
    credit_confirmation(request, result)
    context = {
        "letter": result.letter,
        "signature": result.signature,
        "outcome": result.outcome,
        "receipt": result.receipt,
        # The link is used up: the language links lead to the letter instead.
        "here": request.app.url_path_for("letter", slug=result.letter.slug),
    }
    return render(request, "signatures/confirmed.html", context, headers=NO_STORE)


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
