"""The page a magic link opens: GET shows a button, only POST confirms.

Mail scanners such as Microsoft Safe Links fetch every link in an email before the person
does, so the GET must never use up or confirm anything.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from letters.i18n import N_, gettext
from letters.models import LetterStatus
from letters.security import BodyTooLarge, CSRFError, check_csrf
from letters.signing import LetterClosed, confirm, inspect_link
from letters.tokens import LinkUsed, TokenError
from letters.views.common import db_session, forget_letter, settings_of

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _render(request: Request, name: str, context: dict[str, object], status: int = 200) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers=NO_STORE
    )
    return response


USED = N_(
    "This link has already been used. If it was yours, your signature is counted; "
    "the letter page shows the current count."
)


def _problem(request: Request, message: str, status: int, expired: bool = False) -> Response:
    # The language links lead home: a page about an unusable link never repeats its token.
    context = {"message": message, "expired": expired, "here": request.app.url_path_for("index")}
    return _render(request, "signatures/link_problem.html", context, status)


async def verify_page(request: Request) -> Response:
    """GET (and HEAD): show what would be confirmed and a button. Never changes anything."""
    token = request.path_params["token"]
    async with db_session(request) as session:
        try:
            view = await inspect_link(
                session, token, request.app.state.signer, settings_of(request)
            )
        except TokenError as error:
            return _problem(request, error.message, 400, error.code == "expired_token")
    if view.used:
        # Say no more than that: whoever opens an old link (an employer reading the
        # mailbox, say) learns nothing about which letter it was for.
        return _problem(request, gettext(USED), 400)
    if view.letter.status != LetterStatus.published:
        return _problem(request, gettext(CLOSED), 409)
    return _render(
        request, "signatures/confirm.html", {"letter": view.letter, "pending": view.pending}
    )


CLOSED = N_("This letter has closed and no longer takes signatures.")


async def verify_confirm(request: Request) -> Response:
    """POST from the confirmation page's button: verify and count the signature."""
    token = request.path_params["token"]
    try:
        form = await request.form(max_files=0, max_fields=5, max_part_size=4096)
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
    async with db_session(request, write=True) as session:
        try:
            result = await confirm(session, token, request.app.state.signer, settings_of(request))
        except LinkUsed:
            return _problem(request, gettext(USED), 400)
        except TokenError as error:
            return _problem(request, error.message, 400, error.code == "expired_token")
        except LetterClosed:
            return _problem(request, gettext(CLOSED), 409)
    forget_letter(request, result.letter.slug)
    return _render(
        request,
        "signatures/confirmed.html",
        {
            "letter": result.letter,
            "signature": result.signature,
            "outcome": result.outcome,
            "receipt": result.receipt,
            # The link is used up: the language links lead to the letter instead.
            "here": request.app.url_path_for("letter", slug=result.letter.slug),
        },
    )
