"""Author pages for one letter's text and life: start, edit and preview a draft, publish,
revise openly, change settings, close and reopen, and manage co-authors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.authors import coauthors, drafts, revisions
from letters.authors.access import Access, Act, letter_for, require_creator
from letters.authors.letter_form import (
    MAX_BODY,
    MAX_DOMAINS,
    MAX_NOTE,
    FormErrors,
    clean_body,
    closes_on,
    parse_draft,
    parse_revision,
    parse_settings,
)
from letters.forms import FieldError
from letters.i18n import gettext
from letters.markdown import render_markdown
from letters.models import AllowedDomain, Author, Letter, LetterStatus, LetterVersion, utcnow
from letters.record import founding
from letters.web.common import db_session, send_soon
from letters.web.workspace.session import (
    forget_letter,
    path_id,
    posted_slug,
    read_author_form,
    redirect_to,
    render,
    signed_in,
)

BLANK_ROWS = 3
# Enough for a title, slug, body, settings and MAX_DOMAINS rows of three fields.
EDITOR_FIELDS = 12 + 3 * MAX_DOMAINS


def _overview(request: Request, slug: str, **flags: str) -> Response:
    return redirect_to(request, "author_letter", slug, **flags)


async def _access(request: Request, author: Author, slug: str, owner: bool = False) -> Access:
    async with db_session(request) as session:
        return await letter_for(session, author, slug, owner=owner)


async def _with_rules(
    request: Request, author: Author, slug: str
) -> tuple[Access, Sequence[AllowedDomain]]:
    """The author's access to the letter, and the domains whose staff may sign it."""
    async with db_session(request) as session:
        access = await letter_for(session, author, slug)
        return access, await drafts.domains_of(session, access.letter.id)


def _rows_from_form(form: dict[str, str], extra: int = 0) -> list[dict[str, Any]]:
    """The domain rows as typed, at the same positions (errors are keyed by position)."""
    present = [
        i for i in range(MAX_DOMAINS) if f"domain-{i}" in form or f"organization-{i}" in form
    ]
    count = min(MAX_DOMAINS, (max(present) + 1 if present else 0) + extra)
    return [
        {
            "domain": form.get(f"domain-{i}", ""),
            "organization": form.get(f"organization-{i}", ""),
            "subdomains": form.get(f"subdomains-{i}") == "1",
        }
        for i in range(max(count, 1))
    ]


def _rows_from_rules(rules: Any) -> list[dict[str, Any]]:
    rows = [
        {"domain": r.domain, "organization": r.organization, "subdomains": r.include_subdomains}
        for r in rules
    ]
    return rows + [{"domain": "", "organization": "", "subdomains": False}] * BLANK_ROWS


def _editor(
    request: Request,
    letter: Any,
    form: dict[str, Any],
    rows: list[dict[str, Any]],
    errors: dict[str, str] | None = None,
    status: int = 200,
    preview: str | None = None,
) -> Response:
    context = {
        "letter": letter,
        "form": form,
        "rows": rows,
        "errors": errors or {},
        "preview": preview,
        "max_body": MAX_BODY,
    }
    return render(request, "authors/edit.html", context, status)


async def _edit_post(request: Request, author: Author, letter: Any) -> Response:
    """Save, preview, or add domain rows to the draft form; `letter` is None for a new one."""
    form = await read_author_form(request, max_fields=EDITOR_FIELDS)
    action = form.get("action", "save")
    if action == "more_domains":
        return _editor(request, letter, form, _rows_from_form(form, BLANK_ROWS))
    rows = _rows_from_form(form)
    if action == "preview":
        try:
            preview = render_markdown(clean_body(form.get("body")))
        except FieldError as error:
            return _editor(request, letter, form, rows, {error.field: error.message}, 422)
        return _editor(request, letter, form, rows, preview=preview)
    now = utcnow()
    try:
        draft = parse_draft(form, now)
        async with db_session(request, write=True) as session:
            if letter is None:
                saved = await drafts.create_draft(session, author, draft, now)
            else:
                act = Act(author, letter.slug, now)
                saved = await drafts.save_draft(session, act, draft, form.get("loaded"))
    except FormErrors as problem:
        return _editor(request, letter, form, rows, problem.errors, 422)
    except drafts.EditConflict:
        conflict = {
            "conflict": gettext(
                "Someone else saved this draft after you opened it. Your text is "
                "below, not saved: copy what you need, then reload the draft."
            )
        }
        return _editor(request, letter, form, rows, conflict, 409)
    return _overview(request, saved.slug, saved="1")


@signed_in
async def new_letter(request: Request, author: Author) -> Response:
    require_creator(author)
    if request.method == "POST":
        return await _edit_post(request, author, None)
    form = {"ask_title": "1", "language": "en"}
    return _editor(request, None, form, _rows_from_rules([]))


@signed_in
async def edit(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    access, rules = await _with_rules(request, author, slug)
    letter = access.letter
    if letter.status != LetterStatus.draft:
        target = "author_revise" if letter.status == LetterStatus.published else "author_letter"
        return RedirectResponse(request.app.url_path_for(target, slug=slug), 303)
    if request.method == "POST":
        return await _edit_post(request, author, letter)
    form = {
        "title": letter.title,
        "slug": letter.slug,
        "body": letter.body,
        "language": letter.language,
        "ask_title": "1" if letter.ask_title else "",
        "goal": str(letter.goal or ""),
        "closes_on": closes_on(letter.closes_at),
        "loaded": drafts.stamp(letter),
    }
    return _editor(request, letter, form, _rows_from_rules(rules))


@signed_in
async def overview(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    async with db_session(request) as session:
        access = await letter_for(session, author, slug)
        rules = await drafts.domains_of(session, access.letter.id)
        versions = await revisions.history(session, access.letter)
        founding_open = founding.is_open(await founding.round_of(session, access.letter.id))
    return render(
        request,
        "authors/letter.html",
        {
            "letter": access.letter,
            "access": access,
            "domains": rules,
            "problems": drafts.readiness(access.letter, rules, utcnow()),
            "versions": versions,
            "flags": request.query_params,
            "closes_on": closes_on(access.letter.closes_at),
            "founding_open": founding_open,
        },
    )


@signed_in
async def preview(request: Request, author: Author) -> Response:
    """The saved text as the public will see it."""
    slug = request.path_params["slug"]
    access, rules = await _with_rules(request, author, slug)
    context = {"letter": access.letter, "domains": rules}
    return render(request, "authors/preview.html", context)


@signed_in
async def publish(request: Request, author: Author) -> Response:
    slug = await posted_slug(request)
    try:
        async with db_session(request, write=True) as session:
            await drafts.publish(session, Act(author, slug))
    except drafts.PublishRefused as refused:
        access, rules = await _with_rules(request, author, slug)
        context = {
            "letter": access.letter,
            "access": access,
            "domains": rules,
            "problems": refused.problems,
            "versions": [],
            "flags": {},
            "refused": True,
            "closes_on": closes_on(access.letter.closes_at),
            "here": request.app.url_path_for("author_letter", slug=slug),
        }
        return render(request, "authors/letter.html", context, 422)
    await forget_letter(request, slug)
    return _overview(request, slug, published="1")


StatusChange = Callable[[AsyncSession, Act], Awaitable[Letter]]


async def _change_status(
    request: Request, author: Author, change: StatusChange, flag: str
) -> Response:
    """Close or reopen: `change` is drafts.close or drafts.reopen; `flag` says it on the page."""
    slug = await posted_slug(request)
    async with db_session(request, write=True) as session:
        await change(session, Act(author, slug))
    await forget_letter(request, slug)
    return _overview(request, slug, **{flag: "1"})


@signed_in
async def close(request: Request, author: Author) -> Response:
    return await _change_status(request, author, drafts.close, "closed")


@signed_in
async def reopen(request: Request, author: Author) -> Response:
    return await _change_status(request, author, drafts.reopen, "reopened")


@signed_in
async def settings_page(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    access, rules = await _with_rules(request, author, slug)
    letter = access.letter
    if letter.status == LetterStatus.draft:
        return RedirectResponse(request.app.url_path_for("author_edit", slug=slug), 303)
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = await read_author_form(request, max_fields=EDITOR_FIELDS)
        if form.get("action") == "more_domains":
            return _settings(request, letter, rules, form, BLANK_ROWS)
        try:
            act = Act(author, slug)
            new = parse_settings(form, act.now)
            async with db_session(request, write=True) as session:
                await drafts.change_settings(session, act, new)
        except FormErrors as problem:
            errors = problem.errors
            return _settings(request, letter, rules, form, errors=errors, status=422)
        await forget_letter(request, slug)
        return _overview(request, slug, saved="1")
    form = {
        "ask_title": "1" if letter.ask_title else "",
        "goal": str(letter.goal or ""),
        "closes_on": closes_on(letter.closes_at),
    }
    return _settings(request, letter, rules, form, BLANK_ROWS)


def _settings(
    request: Request,
    letter: Any,
    rules: Any,
    form: dict[str, Any],
    blank_rows: int = 0,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The settings form: the domains allowed so far (`rules`), then rows to add more, as
    typed and `blank_rows` more."""
    rows = _rows_from_form(form, blank_rows)
    context = {"letter": letter, "domains": rules, "form": form, "rows": rows}
    context["errors"] = errors or {}
    return render(request, "authors/settings.html", context, status)


@signed_in
async def revise(request: Request, author: Author) -> Response:
    """A new version of a published letter, with a public note; preview shows the changes."""
    slug = request.path_params["slug"]
    letter = (await _access(request, author, slug)).letter
    if letter.status != LetterStatus.published:
        return RedirectResponse(request.app.url_path_for("author_letter", slug=slug), 303)
    context: dict[str, Any] = {"letter": letter, "errors": {}, "max_body": MAX_BODY}
    context["max_note"] = MAX_NOTE
    if request.method == "GET":
        context["form"] = {"title": letter.title, "body": letter.body, "base": letter.version}
        return render(request, "authors/revise.html", context)
    form = await read_author_form(request)
    context["form"] = form
    base = form.get("base", "")
    base_version = int(base) if base.isascii() and base.isdigit() and len(base) < 9 else None
    try:
        revision = parse_revision(form)
    except FormErrors as problem:
        if form.get("action") != "preview" or set(problem.errors) - {"note"}:
            context["errors"] = problem.errors
            return render(request, "authors/revise.html", context, 422)
        revision = None
    if form.get("action") == "preview":
        current = LetterVersion(
            letter_id=letter.id, number=letter.version, title=letter.title, body=letter.body
        )
        title, body = form.get("title", ""), clean_body(form.get("body"))
        proposed = LetterVersion(letter_id=letter.id, number=0, title=title, body=body)
        context["comparison"] = revisions.compare(current, proposed)
        context["preview"] = render_markdown(body)
        return render(request, "authors/revise.html", context)
    assert revision is not None
    try:
        async with db_session(request, write=True) as session:
            version = await revisions.revise(session, Act(author, slug), revision, base_version)
    except FormErrors as problem:
        context["errors"] = problem.errors
        return render(request, "authors/revise.html", context, 422)
    except drafts.EditConflict:
        context["errors"] = {
            "conflict": gettext(
                "Another author published a new version while you were editing. "
                "Your text is below, not published: compare it with the current version first."
            )
        }
        return render(request, "authors/revise.html", context, 409)
    await forget_letter(request, slug)
    return _overview(request, slug, revised=str(version.number))


@signed_in
async def authors_page(request: Request, author: Author) -> Response:
    """The letter's authors; its owner invites co-authors by email and removes them."""
    slug = request.path_params["slug"]
    errors: dict[str, str] = {}
    status = 200
    background = None
    form: dict[str, str] = {}
    notice = ""
    if request.method == "POST":
        form = await read_author_form(request, max_fields=5)
        try:
            async with db_session(request, write=True) as session:
                outbox_id = await coauthors.invite(
                    session, Act(author, slug), form.get("email"), request.app.state.settings
                )
            background = send_soon(request, outbox_id)
            notice = gettext("Added. They get an email telling them how to sign in.")
            form = {}
        except FieldError as error:
            errors, status = {error.field: error.message}, 422
    async with db_session(request) as session:
        access = await letter_for(session, author, slug)
        people = await coauthors.authors_of(session, access.letter.id)
    context = {
        "letter": access.letter,
        "access": access,
        "people": people,
        "errors": errors,
        "form": form,
        "notice": notice,
    }
    response = render(request, "authors/coauthors.html", context, status)
    response.background = background
    return response


@signed_in
async def remove_author(request: Request, author: Author) -> Response:
    slug = await posted_slug(request)
    target = path_id(request, "author_id")
    async with db_session(request, write=True) as session:
        await coauthors.remove(session, Act(author, slug), target)
    if target == author.id:
        return RedirectResponse(request.app.url_path_for("author_home"), 303)
    return RedirectResponse(request.app.url_path_for("author_authors", slug=slug), 303)


LETTER = "/authors/letters/{slug}"
GET_POST = ["GET", "POST"]

routes = [
    Route("/authors/letters/new", new_letter, methods=GET_POST, name="author_new"),
    Route(LETTER, overview, name="author_letter"),
    Route(f"{LETTER}/edit", edit, methods=GET_POST, name="author_edit"),
    Route(f"{LETTER}/preview", preview, name="author_preview"),
    Route(f"{LETTER}/publish", publish, methods=["POST"], name="author_publish"),
    Route(f"{LETTER}/close", close, methods=["POST"], name="author_close"),
    Route(f"{LETTER}/reopen", reopen, methods=["POST"], name="author_reopen"),
    Route(f"{LETTER}/settings", settings_page, methods=GET_POST, name="author_settings"),
    Route(f"{LETTER}/revise", revise, methods=GET_POST, name="author_revise"),
    Route(f"{LETTER}/authors", authors_page, methods=GET_POST, name="author_authors"),
    Route(
        f"{LETTER}/authors/{{author_id:int}}/remove",
        remove_author,
        methods=["POST"],
        name="author_remove",
    ),
]
