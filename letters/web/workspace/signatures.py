"""Author pages for a letter's signatures: moderation, the audit log, and the export for
delivery (CSV and a print-ready page). None of them shows an address or a hidden name."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from letters.authors import audit, export, moderation
from letters.authors.access import Act, letter_for
from letters.forms import FieldError
from letters.i18n import gettext
from letters.models import Author, utcnow
from letters.record.public import tally
from letters.web.common import NO_STORE, db_session, page_cursor, settings_of
from letters.web.workspace.session import (
    forget_letter,
    message,
    path_id,
    posted_slug,
    read_author_form,
    render,
    signed_in,
)


def _list_url(request: Request, slug: str, done: str) -> str:
    return str(request.app.url_path_for("author_signatures", slug=slug)) + f"?done={done}"


@signed_in
async def signatures(request: Request, author: Author) -> Response:
    """Newest first: public names with their titles, hidden ones only as organization and date."""
    slug = request.path_params["slug"]
    signer = request.app.state.signer
    before_id = page_cursor(request, "before")
    named_only = request.query_params.get("named") == "1"
    async with db_session(request) as session:
        access = await letter_for(session, author, slug)
        rows, next_id = await moderation.signatures(
            session, access.letter, before_id, named_only=named_only
        )
        log = await audit.entries(session, access.letter.id, moderation_only=True, limit=20)
    context = {
        "letter": access.letter,
        "rows": rows,
        "next": signer.dumps_cursor(next_id) if next_id is not None else None,
        "named_only": named_only,
        "done": request.query_params.get("done", ""),
        "log": log,
        "labels": audit.LABELS,
    }
    return render(request, "authors/signatures.html", context)


@signed_in
async def hide(request: Request, author: Author) -> Response:
    slug = await posted_slug(request)
    signature_id = path_id(request, "signature_id")
    keys = settings_of(request).keys
    try:
        async with db_session(request, write=True) as session:
            await moderation.hide_name(session, Act(author, slug), signature_id, keys)
    except moderation.AlreadyDone:
        return message(
            request, 409, gettext("This name is already hidden, or the signature is gone.")
        )
    await forget_letter(request, slug)
    return RedirectResponse(_list_url(request, slug, "hidden"), 303, headers=NO_STORE)


@signed_in
async def invalidate(request: Request, author: Author) -> Response:
    """GET: what will happen, and the reason to give. POST: do it."""
    slug = request.path_params["slug"]
    signature_id = path_id(request, "signature_id")
    async with db_session(request) as session:
        letter = (await letter_for(session, author, slug)).letter
        row = await moderation.row(session, letter, signature_id)
    if row is None:
        return message(
            request, 404, gettext("This signature is no longer counted."), gettext("Not found")
        )
    context: dict[str, Any] = {"letter": letter, "row": row, "reasons": moderation.REASONS}
    context.update(errors={}, form={})
    if request.method == "GET":
        return render(request, "authors/invalidate.html", context)
    form = await read_author_form(request, max_fields=5)
    try:
        reason = moderation.parse_reason(form.get("reason"), form.get("details"))
        async with db_session(request, write=True) as session:
            await moderation.invalidate(session, Act(author, slug), signature_id, reason)
    except FieldError as error:
        context.update(errors={error.field: error.message}, form=form)
        return render(request, "authors/invalidate.html", context, 422)
    except moderation.AlreadyDone:
        return message(request, 409, gettext("This signature is no longer counted."))
    await forget_letter(request, slug)
    return RedirectResponse(_list_url(request, slug, "invalidated"), 303, headers=NO_STORE)


@signed_in
async def audit_log(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    async with db_session(request) as session:
        letter = (await letter_for(session, author, slug)).letter
        entries = await audit.entries(session, letter.id)
    context = {"letter": letter, "entries": entries, "labels": audit.LABELS}
    return render(request, "authors/audit.html", context)


@signed_in
async def export_csv(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    async with db_session(request) as session:
        letter = (await letter_for(session, author, slug)).letter
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    headers = {
        **NO_STORE,
        "Content-Disposition": f'attachment; filename="{slug}-signatures-{stamp}.csv"',
    }
    return StreamingResponse(
        export.csv_lines(lambda: db_session(request), letter),
        media_type="text/csv; charset=utf-8",
        headers=headers,
    )


@signed_in
async def export_page(request: Request, author: Author) -> Response:
    """A print-ready page: the letter, then its signatures by organization."""
    slug = request.path_params["slug"]
    async with db_session(request) as session:
        letter = (await letter_for(session, author, slug)).letter
        counts = await tally(session, letter)
        named = []
        after = None
        while True:
            batch = await export.named_rows(session, letter, after, export.BATCH)
            named.extend(batch)
            if len(batch) < export.BATCH:
                break
            after = batch[-1].id
        hidden = dict(await export.hidden_per_organization(session, letter))
    by_organization: dict[str, list[export.NamedRow]] = defaultdict(list)
    for row in named:
        by_organization[row.organization].append(row)
    organizations = [
        (name, by_organization.get(name, []), hidden.get(name, 0))
        for name, _ in counts.organizations
    ]
    context = {"letter": letter, "tally": counts, "organizations": organizations}
    context["as_of"] = utcnow()
    return render(request, "authors/export.html", context)


routes = [
    Route("/authors/letters/{slug}/signatures", signatures, name="author_signatures"),
    Route(
        "/authors/letters/{slug}/signatures/{signature_id:int}/hide",
        hide,
        methods=["POST"],
        name="author_hide",
    ),
    Route(
        "/authors/letters/{slug}/signatures/{signature_id:int}/invalidate",
        invalidate,
        methods=["GET", "POST"],
        name="author_invalidate",
    ),
    Route("/authors/letters/{slug}/audit", audit_log, name="author_audit"),
    Route("/authors/letters/{slug}/export", export_page, name="author_export"),
    Route("/authors/letters/{slug}/export.csv", export_csv, name="author_export_csv"),
]
