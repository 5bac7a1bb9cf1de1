"""Public letter pages and the HTML signing form."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters import i18n
from letters.forms import FieldError
from letters.i18n import ngettext
from letters.mail.compose import hours
from letters.ratelimit import RateLimited
from letters.record.public import LetterSnapshot, list_public_letters, named_signatures
from letters.record.signing import LetterClosed
from letters.web import cache
from letters.web.common import (
    HTML,
    SEND_AGAIN,
    FormExpired,
    cached,
    conditional,
    db_session,
    etag_for,
    forget_letter,
    page_cursor,
    read_form,
    render,
    render_text,
    send_soon,
    settings_of,
    sign_request,
    snapshot_or_404,
    tag_answer,
    text_fields,
    too_many,
    version,
)
from letters.web.language import to_language
from letters.web.security import csrf_token, fetch_site

NAMES_PER_PAGE = 200
FORM_FIELDS = ("name", "title", "email", "show_name", "reveal_at")
HTML_CACHING = "private, no-cache"  # revalidate every time; the ETag makes that cheap


def too_many_message(minutes: int) -> str:
    return ngettext(
        "Too many signing requests came from here or for this address. "
        "Please wait %(minutes)s minute and try again.",
        "Too many signing requests came from here or for this address. "
        "Please wait %(minutes)s minutes and try again.",
        minutes,
        minutes=minutes,
    )


async def index(request: Request) -> Response:
    async def load() -> tuple[bytes, str]:
        async with db_session(request) as session:
            letters = await list_public_letters(session)
        context = {"letters": letters, "here": request.app.url_path_for("index")}
        html = render_text(request, "letters/index.html", context).encode()
        return html, etag_for(html)

    tag_answer(request, cache.LISTS)
    html, etag = await cached(request, cache.key("index", i18n.current()), load, [cache.LISTS])
    return conditional(request, html, etag, HTML, HTML_CACHING)


def _letter_context(request: Request, snapshot: LetterSnapshot, csrf: str) -> dict[str, Any]:
    return {
        "site_url": settings_of(request).base_url,
        "letter": snapshot.letter,
        "tally": snapshot.tally,
        "names": snapshot.names,
        "more_names": snapshot.more_names,
        "domains": snapshot.domains,
        "per_version": snapshot.per_version,
        "deliveries": snapshot.deliveries,
        "follow_ups": snapshot.follow_ups,
        "with_text": True,
        "closes_on": last_day(snapshot.letter.closes_at),
        "form": {},
        "errors": {},
        "csrf": csrf,
        # The letter page, also when the form was posted to /sign: where the language
        # links in the footer come back to.
        "here": request.app.url_path_for("letter", slug=snapshot.letter.slug),
    }


async def letter_page(request: Request) -> Response:
    """`/{language}/letters/{slug}`: the same bytes for every reader, which a shared cache may
    keep for a second; its forms carry no token (web.security) and it sets no cookie."""
    slug = request.path_params["slug"]
    snapshot = await snapshot_or_404(request, slug)

    async def load() -> tuple[bytes, str]:
        context = _letter_context(request, snapshot, "")
        html = render_text(request, "letters/letter.html", context).encode()
        return html, etag_for(html)

    key = cache.key("letter-html", slug, i18n.current(), *version(snapshot))
    html, etag = await cached(request, key, load, [cache.letter_tag(snapshot.letter.id)])
    return conditional(request, html, etag, HTML, cache.SHARED_PAGE)


async def _letter_page_again(
    request: Request, slug: str, status: int, form: dict[str, Any], errors: dict[str, str]
) -> Response:
    """The letter page with the reader's input and what is wrong with it."""
    context = _letter_context(request, await snapshot_or_404(request, slug), csrf_token(request))
    context.update(form=form, errors=errors)
    return render(request, "letters/letter.html", context, status=status)


def last_day(closes_at: datetime | None) -> date | None:
    """The last day that takes signatures: a letter closes at the next midnight (UTC)."""
    return (closes_at - timedelta(days=1)).date() if closes_at else None


async def sign_form(request: Request) -> Response:
    """GET of the form's address (left in the bar after an error): back to the form."""
    slug = request.path_params["slug"]
    url = request.app.url_path_for("letter_in", language=i18n.current(), slug=slug)
    return RedirectResponse(f"{url}#sign", status_code=303)


async def sign(request: Request) -> Response:
    slug = request.path_params["slug"]
    try:
        data = text_fields(await read_form(request), FORM_FIELDS)
    except FormExpired as refused:
        if fetch_site(request) is not None:
            raise
        # A browser that does not say where its forms come from: the form again, with a token
        # (the message links to the form's heading: no field is wrong).
        form = text_fields(refused.fields, FORM_FIELDS)
        return await _letter_page_again(
            request, slug, 403, form, {"sign-heading": i18n.gettext(SEND_AGAIN)}
        )
    try:
        link = await sign_request(request, slug, data)
    except LetterClosed as closed:
        forget_letter(request, closed.letter_id, rules=True)
        return await _letter_page_again(request, slug, 409, {}, {})
    except FieldError as error:
        return await _letter_page_again(request, slug, 422, data, {error.field: error.message})
    except RateLimited as limited:
        return too_many(request, limited, too_many_message)
    return RedirectResponse(
        request.app.url_path_for("check_email", slug=slug),
        status_code=303,
        background=send_soon(request, link.leased or link.outbox_id),
    )


async def check_email(request: Request) -> Response:
    letter = (await snapshot_or_404(request, request.path_params["slug"])).letter
    settings = settings_of(request)
    # The subject as the email has it: translated when it is the default one.
    subject = i18n.gettext(settings.mail_subject)
    context = {"letter": letter, "hours": hours(settings.link_max_age), "subject": subject}
    return render(request, "signatures/check_email.html", context)


async def signatures_page(request: Request) -> Response:
    signer = request.app.state.signer
    after_id = page_cursor(request, "after")
    slug = request.path_params["slug"]
    letter = (await snapshot_or_404(request, slug)).letter

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

    key = cache.key("names", slug, i18n.current(), after_id)
    html, etag = await cached(request, key, load, [cache.letter_tag(letter.id)])
    return conditional(request, html, etag, HTML, HTML_CACHING)


routes = [
    Route("/", index, name="index"),
    Route("/letters/{slug}", to_language("letter_in"), name="letter"),
    Route("/{language:language}/letters/{slug}", letter_page, name="letter_in"),
    Route("/letters/{slug}/sign", sign, methods=["POST"], name="sign"),
    Route("/letters/{slug}/sign", sign_form, methods=["GET"], name="sign_form"),
    Route("/letters/{slug}/check-email", check_email, name="check_email"),
    Route("/letters/{slug}/signatures", signatures_page, name="signatures"),
]
