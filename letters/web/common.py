"""What every view uses: a session per request, templates, reading a form with its CSRF
check, problem and 429 pages, conditional answers, the per-process cache of letters, and
one table from the record's exceptions to HTTP statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from letters import i18n
from letters.db import retrying
from letters.forms import FieldError, Requester
from letters.i18n import N_
from letters.mail import outbox
from letters.mail.compose import signing_email
from letters.markdown import excerpt, render_markdown
from letters.ratelimit import RateLimited
from letters.record import floods
from letters.record.counting import SignatureGone
from letters.record.public import LetterNotFound, LetterSnapshot, load_snapshot
from letters.record.signing import (
    Confirmation,
    LetterClosed,
    LinkToSend,
    SigningRules,
    request_signature,
)
from letters.record.signing import signing_rules as read_signing_rules
from letters.resources import TEMPLATES
from letters.settings import Settings
from letters.tokens import LinkUsed, TokenError
from letters.web import cache
from letters.web.security import BODY_ERRORS, CSRFError, check_csrf, csrf_token

T = TypeVar("T")
NAMES_ON_LETTER_PAGE = 50
# Pages about one person's link or signature: never kept by a cache, never a Referer.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
HTML = "text/html; charset=utf-8"


class FormUnreadable(HTTPException):
    """A posted body that is not a form: 400."""

    def __init__(self) -> None:
        super().__init__(400, N_("The form could not be read."))


class FormExpired(HTTPException):
    """A form refused by the CSRF check: 403. `fields`: what it carried, to fill it in again."""

    def __init__(self, fields: dict[str, str] | None = None) -> None:
        super().__init__(403, N_("This form has expired. Go back, reload the page and try again."))
        self.fields = fields or {}


# Said above a form of the letter page sent again with a token, for a browser that does not
# say where its forms come from (web.security).
SEND_AGAIN = N_("Please check the form and send it again: this makes sure it was you who sent it.")


# The status each exception of the record answers with, wherever it is raised. Messages
# are the exception's own (TokenError, FieldError) or the view's, for its readers.
STATUS: Mapping[type[Exception], int] = {
    LetterNotFound: 404,
    LetterClosed: 409,
    SignatureGone: 409,
    RateLimited: 429,
    LinkUsed: 400,
    TokenError: 400,
    FieldError: 422,
    CSRFError: 403,
}


def status_of(error: Exception) -> int:
    """The status for `error`, from the nearest of its classes in STATUS."""
    if isinstance(error, HTTPException):
        return error.status_code
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    raise error


def datetime_attr(moment: datetime) -> str:
    """A moment for `<time datetime>`: UTC to the second, as the HTML standard reads it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_templates() -> Jinja2Templates:
    """The pages' template environment: translated, with the helpers templates call."""
    from letters.web.language import return_path  # the switcher's helper; it imports this

    templates = Jinja2Templates(directory=TEMPLATES)
    i18n.install(templates.env)
    templates.env.globals["csrf_token"] = csrf_token
    templates.env.globals["return_path"] = return_path
    templates.env.filters["markdown"] = render_markdown
    templates.env.filters["excerpt"] = excerpt
    templates.env.filters["iso_day"] = date.fromisoformat
    templates.env.filters["datetime_attr"] = datetime_attr
    return templates


@asynccontextmanager
async def db_session(request: Request, write: bool = False) -> AsyncIterator[AsyncSession]:
    """A session for one request; `write=True` for the transactions that change data."""
    maker = request.app.state.writer if write else request.app.state.sessionmaker
    async with maker() as session:
        yield session


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def credit_confirmation(request: Request, result: object) -> None:
    """Tell this process's flood watch that a sign request from the domain was real."""
    if isinstance(result, Confirmation) and result.outcome == "verified":
        key = floods.domain_key(request.app.state.signer, result.signature.domain)
        request.app.state.floods.confirmed(result.letter.id, key)


def client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


def requester(request: Request) -> Requester:
    return Requester(client_host(request), request.app.state.signer, settings_of(request))


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers=headers
    )
    return response


def render_text(request: Request, name: str, context: dict[str, Any]) -> str:
    """Render a page that does not depend on the request, so it can be cached."""
    return str(request.app.state.templates.get_template(name).render(context))


async def read_form(
    request: Request, max_fields: int = 20, max_part_size: int = 16 * 1024
) -> dict[str, str]:
    """The posted text fields, after the CSRF check.

    Raises FormUnreadable or FormExpired (HTTP exceptions, answered as such unless a view
    catches them); a body over the limit goes on to BodyLimitMiddleware, which answers 413.
    """
    try:
        form = await request.form(max_files=0, max_fields=max_fields, max_part_size=max_part_size)
    except BODY_ERRORS:
        raise
    except Exception:  # malformed bodies of every kind: python-multipart raises many types
        raise FormUnreadable from None
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        check_csrf(request, form)
    except CSRFError:
        raise FormExpired(fields) from None
    return fields


def text_fields(form: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str | None]:
    """The named fields of a form, None where absent."""
    return {name: form.get(name) for name in names}


def problem(
    request: Request, template: str, message: str, status: int, expired: bool = False
) -> Response:
    """A page about a link that cannot be used; `message` is already translated.

    Its language links lead home: such a page never repeats the link's token.
    """
    context = {"message": message, "expired": expired, "here": request.app.url_path_for("index")}
    return render(request, template, context, status, NO_STORE)


def link_problem(
    request: Request, template: str, error: Exception, messages: Mapping[type[Exception], str]
) -> Response:
    """`problem()` for an exception of the record: its status from STATUS, its message from
    `messages` (English, translated here) or its own."""
    message = next(
        (i18n.gettext(text) for kind, text in messages.items() if isinstance(error, kind)),
        None,
    )
    if message is None:
        if isinstance(error, HTTPException):
            message = i18n.gettext(str(error.detail))
        else:
            message = str(getattr(error, "message", ""))
    expired = isinstance(error, TokenError) and error.code == "expired_token"
    return problem(request, template, message, status_of(error), expired)


def too_many(request: Request, limited: RateLimited, message_for: Callable[[int], str]) -> Response:
    """The 429 page for a letter's forms; `message_for(minutes)` says how long to wait."""
    message = message_for(max(1, limited.retry_after // 60))
    here = request.app.url_path_for("letter", slug=request.path_params["slug"])
    context = {"status": 429, "message": message, "here": here}
    response = render(request, "errors/error.html", context, 429)
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


def send_soon(request: Request, *outbox_ids: int | outbox.Leased | None) -> BackgroundTask | None:
    """Send queued emails just after the response goes out, when this process sends mail.

    If that fails a message stays in the outbox and is retried with backoff, by this
    process's sender or by `letters worker`.
    """
    ids = [i for i in outbox_ids if i is not None]
    settings = settings_of(request)
    if not ids or not settings.mail_in_app:
        return None
    state = request.app.state

    async def send() -> None:
        for message in ids:
            if isinstance(message, outbox.Leased):
                await outbox.send_leased(state.writer, state.mail, message)
            else:
                await outbox.send_now(
                    state.writer, state.mail, settings.keys, message, state.prepare
                )

    return BackgroundTask(send)


def run_job_later(request: Request, job_id: int) -> None:
    """Hand a queued job (outbox.Job) to this process's job runner, which runs it on its own
    beat (letters.jobs.JobRunner), never right after this answer: what the job finds (did
    the address sign?) must not change how long this or the next answer takes. Without a
    runner (MAIL_IN_APP=false), `letters worker` finds it in the outbox."""
    runner = getattr(request.app.state, "job_runner", None)
    if runner is not None:
        runner.add(job_id)


async def cached(
    request: Request, key: Hashable, load: Callable[[], Awaitable[T]], tags: cache.Tags
) -> T:
    """`load()` at most once per CACHE_SECONDS per key in this process (see web.cache)."""
    store: cache.TTLCache = request.app.state.cache
    return await store.get(key, load, tags)


def forget_letter(request: Request, letter_id: int | None, rules: bool = False) -> None:
    """Drop this process's cached copies of a letter (and the lists) after it changed here;
    with `rules`, its signing rules too (it closed, or its authors changed it)."""
    store: cache.TTLCache = request.app.state.cache
    tags: list[Hashable] = [cache.LISTS]
    if letter_id is not None:
        tags.append(cache.letter_tag(letter_id))
        if rules:
            request.app.state.rules.forget(cache.rules_tag(letter_id))
    store.forget(*tags)


async def sign_request(
    request: Request, slug: str, data: dict[str, Any], rules: SigningRules | None = None
) -> LinkToSend:
    """This request's sign request (letters.record.signing.request_signature), with the
    letter's signing rules from this process's cache unless `rules` are given."""
    settings = settings_of(request)
    rules = rules or await signing_rules(request, slug)
    return await in_transaction(
        request,
        lambda session: request_signature(
            session,
            slug=slug,
            data=data,
            client_host=client_host(request),
            signer=request.app.state.signer,
            settings=settings,
            compose=signing_email(settings),
            rules=rules,
            floods=request.app.state.floods,
        ),
    )


async def signing_rules(request: Request, slug: str) -> SigningRules:
    """The letter and allowed domains a sign request checks, from this process's cache of
    signing rules (see cache.RULES_SECONDS); raises LetterNotFound (also cached)."""

    async def load() -> SigningRules:
        async with db_session(request) as session:
            return await read_signing_rules(session, slug)

    store: cache.TTLCache = request.app.state.rules
    rules: SigningRules = await store.get(
        cache.key("signing-rules", slug),
        load,
        tags=lambda found: [cache.rules_tag(found.letter.id)],
    )
    return rules


async def in_transaction(
    request: Request, work: Callable[[AsyncSession], Awaitable[T]], write: bool = True
) -> T:
    """Run one transaction (`work`, which commits) in a session of its own, again on a
    fresh connection if the database connection turns out to have been closed (see
    letters.db.retrying): a POST never fails because a pooled connection went stale."""
    maker = request.app.state.writer if write else request.app.state.sessionmaker
    return await retrying(maker, work)


async def letter_snapshot(request: Request, slug: str) -> LetterSnapshot:
    """The cached public view of a letter; raises LetterNotFound (also cached).

    The answer of a request that read a letter is about that letter: its tag goes into
    the request's cache tags, which the fast path keeps the answer under.
    """

    async def load() -> LetterSnapshot:
        async with db_session(request) as session:
            return await load_snapshot(session, slug, NAMES_ON_LETTER_PAGE)

    store: cache.TTLCache = request.app.state.cache
    snapshot = await store.get(cache.key("letter", slug), load, tags=_tags_of_snapshot)
    tag_answer(request, cache.letter_tag(snapshot.letter.id))
    return snapshot


def _tags_of_snapshot(snapshot: LetterSnapshot) -> list[Hashable]:
    return [cache.letter_tag(snapshot.letter.id)]


def page_cursor(request: Request, name: str) -> int | None:
    """The row a list's page starts from, as its link's cursor `?{name}=` holds it; None
    on the first page; 400 for a cursor this site did not make."""
    cursor = request.query_params.get(name)
    if not cursor:
        return None
    try:
        row_id: int = request.app.state.signer.loads_cursor(cursor)
    except ValueError:
        raise HTTPException(400, N_("That page link is not valid.")) from None
    return row_id


def tag_answer(request: Request, *tags: Hashable) -> None:
    """Say what this request's answer shows, so the fast path can drop it when that changes."""
    request.scope.setdefault("state", {}).setdefault(cache.ANSWER_TAGS, set()).update(tags)


async def snapshot_or_404(request: Request, slug: str) -> LetterSnapshot:
    try:
        return await letter_snapshot(request, slug)
    except LetterNotFound:
        raise HTTPException(404) from None


def version(snapshot: LetterSnapshot) -> tuple[object, ...]:
    """What identifies the state of a letter's public record (for cache keys)."""
    letter = snapshot.letter
    return (letter.updated_at, letter.verified_count, letter.named_count, letter.status)


def conditional(
    request: Request,
    body: bytes,
    etag: str,
    media_type: str,
    cache_control: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A 200 with ETag and Cache-Control, or a 304 when the client already has this body."""
    all_headers = {"ETag": etag, "Cache-Control": cache_control, **(headers or {})}
    if_none_match = request.headers.get("if-none-match", "")
    if etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers=all_headers)
    return Response(body, media_type=media_type, headers=all_headers)


etag_for = cache.etag_for


async def cached_letter_answer(
    request: Request,
    snapshot: LetterSnapshot,
    key: tuple[Hashable, ...],
    load: Callable[[], Awaitable[tuple[bytes, str]]],
    media_type: str,
    cache_control: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """An answer about one letter: `load()`ed once per `key` (web.cache.key) and state of
    the letter in this process's cache, sent as `conditional` sends it."""
    versioned = (*key, *version(snapshot))
    body, etag = await cached(request, versioned, load, [cache.letter_tag(snapshot.letter.id)])
    return conditional(request, body, etag, media_type, cache_control, headers)
