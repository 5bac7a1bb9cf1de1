"""Public letter pages and the HTML signing form."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from letters import fastpath, i18n
from letters.forms import FieldError
from letters.i18n import N_
from letters.public import (
    LetterNotFound,
    LetterSnapshot,
    list_public_letters,
    named_signatures,
)
from letters.ratelimit import RateLimited
from letters.security import BodyTooLarge, CSRFError, check_csrf, csrf_token
from letters.signing import LetterClosed, request_signature
from letters.views.common import (
    cached,
    client_host,
    conditional,
    db_session,
    deliver,
    etag_for,
    forget_letter,
    letter_snapshot,
    settings_of,
    signing_email,
    version,
)

NAMES_PER_PAGE = 200
FORM_FIELDS = ("name", "title", "email", "show_name", "reveal_at")
# Stands for the reader's CSRF token in cached pages; swapped in for each request.
CSRF_PLACEHOLDER = fastpath.CSRF_PLACEHOLDER.decode()
HTML_CACHING = "private, no-cache"  # revalidate every time; the ETag makes that cheap


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def render_text(request: Request, name: str, context: dict[str, Any]) -> str:
    """Render a page that does not depend on the request, so it can be cached."""
    return str(request.app.state.templates.get_template(name).render(context))


async def index(request: Request) -> Response:
    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            letters = await list_public_letters(session)
        context = {"letters": letters, "here": request.app.url_path_for("index")}
        html = render_text(request, "letters/index.html", context).encode()
        return html, etag_for(html)

    html, etag = await cached(request, ("index", i18n.current()), load)
    return conditional(request, html, etag, "text/html; charset=utf-8", HTML_CACHING)


def _letter_context(request: Request, snapshot: LetterSnapshot, csrf: str) -> dict[str, Any]:
    return {
        "site_url": settings_of(request).base_url,
        "letter": snapshot.letter,
        "tally": snapshot.tally,
        "names": snapshot.names,
        "more_names": snapshot.more_names,
        "domains": snapshot.domains,
        "per_version": snapshot.per_version,
        "form": {},
        "errors": {},
        "csrf": csrf,
        # The letter page, also when the form was posted to /sign: where the language
        # links in the footer come back to.
        "here": request.app.url_path_for("letter", slug=snapshot.letter.slug),
    }


async def _snapshot_or_404(request: Request, slug: str) -> LetterSnapshot:
    try:
        return await letter_snapshot(request, slug)
    except LetterNotFound:
        raise HTTPException(404) from None


async def letter_page(request: Request) -> Response:
    slug = request.path_params["slug"]
    snapshot = await _snapshot_or_404(request, slug)

    async def load() -> tuple[str, str]:
        html = render_text(
            request, "letters/letter.html", _letter_context(request, snapshot, CSRF_PLACEHOLDER)
        )
        return html, etag_for(html)

    key = ("letter-html", slug, i18n.current(), *version(snapshot))
    html, etag = await cached(request, key, load)
    # Hand the page over to the fast path, which then serves it with each reader's token.
    request.scope.setdefault("state", {})[fastpath.PAGE_TEMPLATE] = (html, etag)
    token = csrf_token(request)
    return conditional(
        request,
        html.replace(CSRF_PLACEHOLDER, token).encode(),
        etag_for(etag, token),
        "text/html; charset=utf-8",
        HTML_CACHING,
    )


async def _letter_page_again(
    request: Request, slug: str, status: int, form: dict[str, Any], errors: dict[str, str]
) -> Response:
    """The letter page with the reader's input and what is wrong with it."""
    context = _letter_context(request, await _snapshot_or_404(request, slug), csrf_token(request))
    context.update(form=form, errors=errors)
    return render(request, "letters/letter.html", context, status=status)


async def _read_form(request: Request) -> FormData:
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
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
        forget_letter(request, slug)
        return await _letter_page_again(request, slug, 409, {}, {})
    except FieldError as error:
        return await _letter_page_again(request, slug, 422, data, {error.field: error.message})
    except RateLimited as limited:
        minutes = max(1, limited.retry_after // 60)
        response = render(
            request,
            "errors/error.html",
            {
                "status": 429,
                "message": i18n.ngettext(
                    "Too many signing requests came from here or for this address. "
                    "Please wait %(minutes)s minute and try again.",
                    "Too many signing requests came from here or for this address. "
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
        request.app.url_path_for("check_email", slug=slug),
        status_code=303,
        background=deliver(request, link),
    )


async def check_email(request: Request) -> Response:
    letter = (await _snapshot_or_404(request, request.path_params["slug"])).letter
    settings = settings_of(request)
    hours = max(1, round(settings.link_max_age / 3600))
    # The subject as the email has it: translated when it is the default one.
    subject = i18n.gettext(settings.mail_subject)
    context = {"letter": letter, "hours": hours, "subject": subject}
    return render(request, "signatures/check_email.html", context)


async def signatures_page(request: Request) -> Response:
    signer = request.app.state.signer
    after = request.query_params.get("after")
    after_id = None
    if after:
        try:
            after_id = signer.loads_cursor(after)
        except ValueError:
            raise HTTPException(400, N_("That page link is not valid.")) from None
    slug = request.path_params["slug"]
    letter = (await _snapshot_or_404(request, slug)).letter

    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            names, next_id = await named_signatures(session, letter, after_id, NAMES_PER_PAGE)
        next_cursor = signer.dumps_cursor(next_id) if next_id is not None else None
        here = request.app.url_path_for("signatures", slug=slug)
        if after_id is not None:
            here += f"?after={signer.dumps_cursor(after_id)}"
        context = {"letter": letter, "names": names, "next_cursor": next_cursor, "here": here}
        html = render_text(request, "letters/signatures.html", context).encode()
        return html, etag_for(html)

    html, etag = await cached(request, ("names", slug, i18n.current(), after_id), load)
    return conditional(request, html, etag, "text/html; charset=utf-8", HTML_CACHING)
