"""Public letter pages and the HTML signing form."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from letters.forms import FieldError
from letters.public import (
    LetterNotFound,
    allowed_domains,
    get_public_letter,
    list_public_letters,
    named_signatures,
    tally,
)
from letters.ratelimit import RateLimited
from letters.security import BodyTooLarge, CSRFError, check_csrf
from letters.signing import LetterClosed, request_signature
from letters.views.common import client_host, db_session, deliver, settings_of, signing_email

NAMES_ON_LETTER_PAGE = 50
NAMES_PER_PAGE = 200
FORM_FIELDS = ("name", "title", "email", "show_name")


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


async def index(request: Request) -> Response:
    async with db_session(request) as session:
        letters = await list_public_letters(session)
    return render(request, "letters/index.html", {"letters": letters})


async def _letter_context(request: Request, slug: str) -> dict[str, Any]:
    async with db_session(request) as session:
        try:
            letter = await get_public_letter(session, slug)
        except LetterNotFound:
            raise HTTPException(404) from None
        counts = await tally(session, letter)
        names, next_id = await named_signatures(session, letter, None, NAMES_ON_LETTER_PAGE)
        domains = await allowed_domains(session, letter)
    return {
        "letter": letter,
        "tally": counts,
        "names": names,
        "more_names": next_id is not None,
        "domains": domains,
        "form": {},
        "errors": {},
    }


async def letter_page(request: Request) -> Response:
    context = await _letter_context(request, request.path_params["slug"])
    return render(request, "letters/letter.html", context)


async def _read_form(request: Request) -> FormData:
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    except BodyTooLarge:
        raise  # answered with 413 by BodyLimitMiddleware
    except Exception:  # malformed bodies of every kind: python-multipart raises many types
        raise HTTPException(400, "The form could not be read.") from None
    try:
        check_csrf(request, form)
    except CSRFError:
        raise HTTPException(
            403, "This form has expired. Go back, reload the page and try again."
        ) from None
    return form


async def sign(request: Request) -> Response:
    slug = request.path_params["slug"]
    form = await _read_form(request)
    values = {key: form.get(key) for key in FORM_FIELDS}
    data = {key: value if isinstance(value, str) else None for key, value in values.items()}
    settings = settings_of(request)
    try:
        async with db_session(request, write=True) as session:
            link = await request_signature(
                session,
                slug=slug,
                data=data,
                client_host=client_host(request),
                signer=request.app.state.signer,
                settings=settings,
                compose=signing_email(request),
            )
    except LetterNotFound:
        raise HTTPException(404) from None
    except LetterClosed:
        context = await _letter_context(request, slug)
        return render(request, "letters/letter.html", context, status=409)
    except FieldError as error:
        context = await _letter_context(request, slug)
        context["form"] = data
        context["errors"] = {error.field: error.message}
        return render(request, "letters/letter.html", context, status=422)
    except RateLimited as limited:
        response = render(
            request,
            "errors/error.html",
            {
                "status": 429,
                "message": "Too many signing requests came from here or for this address. "
                f"Please wait {max(1, limited.retry_after // 60)} minutes and try again.",
            },
            status=429,
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    return RedirectResponse(
        request.url_for("check_email", slug=slug),
        status_code=303,
        background=deliver(request, link),
    )


async def check_email(request: Request) -> Response:
    async with db_session(request) as session:
        try:
            letter = await get_public_letter(session, request.path_params["slug"])
        except LetterNotFound:
            raise HTTPException(404) from None
    hours = max(1, round(settings_of(request).link_max_age / 3600))
    return render(request, "signatures/check_email.html", {"letter": letter, "hours": hours})


async def signatures_page(request: Request) -> Response:
    signer = request.app.state.signer
    after = request.query_params.get("after")
    after_id = None
    if after:
        try:
            after_id = signer.loads_cursor(after)
        except ValueError:
            raise HTTPException(400, "That page link is not valid.") from None
    async with db_session(request) as session:
        try:
            letter = await get_public_letter(session, request.path_params["slug"])
        except LetterNotFound:
            raise HTTPException(404) from None
        names, next_id = await named_signatures(session, letter, after_id, NAMES_PER_PAGE)
    next_cursor = signer.dumps_cursor(next_id) if next_id is not None else None
    return render(
        request,
        "letters/signatures.html",
        {"letter": letter, "names": names, "next_cursor": next_cursor},
    )
