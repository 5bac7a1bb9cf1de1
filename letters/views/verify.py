"""The page a magic link opens: GET shows a button, only POST confirms.

Mail scanners such as Microsoft Safe Links fetch every link in an email before the person
does, so the GET must never use up or confirm anything.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

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


async def verify_page(request: Request) -> Response:
    token = request.path_params["token"]
    signer = request.app.state.signer
    settings = settings_of(request)
    if request.method == "POST":
        try:
            form = await request.form(max_files=0, max_fields=5, max_part_size=4096)
            check_csrf(request, form)
        except BodyTooLarge:
            raise  # answered with 413 by BodyLimitMiddleware
        except CSRFError:
            return _render(
                request,
                "signatures/link_problem.html",
                {
                    "message": "This page expired before you pressed the button. "
                    "Open the link from your email again."
                },
                status=403,
            )
        except Exception:  # a malformed form body
            return _render(
                request,
                "signatures/link_problem.html",
                {"message": "The form could not be read."},
                status=400,
            )
    async with db_session(request, write=request.method == "POST") as session:
        try:
            if request.method == "GET":
                view = await inspect_link(session, token, signer, settings)
                if not view.used and view.letter.status != LetterStatus.published:
                    raise LetterClosed
                template = "signatures/confirmed.html" if view.used else "signatures/confirm.html"
                return _render(
                    request,
                    template,
                    {"letter": view.letter, "pending": view.pending, "already": view.used},
                )
            result = await confirm(session, token, signer, settings)
        except LinkUsed:
            view = await inspect_link(session, token, signer, settings)
            return _render(
                request,
                "signatures/confirmed.html",
                {"letter": view.letter, "pending": view.pending, "already": True},
            )
        except TokenError as error:
            return _render(
                request,
                "signatures/link_problem.html",
                {"message": error.message, "expired": error.code == "expired_token"},
                status=400,
            )
        except LetterClosed:
            return _render(
                request,
                "signatures/link_problem.html",
                {"message": "This letter has closed and no longer takes signatures."},
                status=409,
            )
    forget_letter(request, result.letter.slug)
    return _render(
        request,
        "signatures/confirmed.html",
        {
            "letter": result.letter,
            "pending": result.signature,
            "already": False,
            "outcome": result.outcome,
        },
    )
