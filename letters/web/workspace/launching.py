"""The author page of a draft's founding round: open it, share its link, plan or start the
launch, replace the link, or close the round. Forms only; no JavaScript."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.authors import drafts, rounds
from letters.authors.access import Act, letter_for
from letters.authors.letter_form import FormErrors
from letters.models import Author, LetterStatus
from letters.record import founding
from letters.web.common import NO_STORE, db_session, settings_of
from letters.web.workspace.session import (
    Refused,
    forget_letter,
    posted_slug,
    read_author_form,
    redirect_to,
    render,
    signed_in,
)

FIELDS = 5


def _here(request: Request, slug: str, **flags: str) -> Response:
    return redirect_to(request, "author_founding", slug, **flags)


async def _page(
    request: Request,
    author: Author,
    slug: str,
    *,
    plan: Refused | None = None,
    problems: dict[str, str] | None = None,
) -> Response:
    """The round's page; with the plan form `Refused` as sent, or with the `problems` that
    keep the draft from being signed (both answered with 422)."""
    async with db_session(request) as session:
        access = await letter_for(session, author, slug)
        letter = access.letter
        found = await founding.round_of(session, letter.id)
        signed = await founding.founding_count(session, letter.id)
    if letter.status != LetterStatus.draft and not (found and found.launched_at):
        return RedirectResponse(request.app.url_path_for("author_letter", slug=slug), 303)
    is_open = founding.is_open(found)
    link = None
    if is_open and found is not None:
        token = founding.make_token(request.app.state.signer, found)
        link = settings_of(request).base_url + request.app.url_path_for("founding", token=token)
    planned = None
    if found is not None and found.launch_at is not None:
        planned = rounds.in_zone(found.launch_at, found.time_zone)
    launched = None
    if found is not None and found.launched_at is not None:
        launched = rounds.in_zone(found.launched_at, found.time_zone)
    context: dict[str, Any] = {
        "letter": letter,
        "access": access,
        "round": found,
        "is_open": is_open,
        "link": link,
        "signed": signed,
        "planned": planned,
        "launched": launched,
        "form": plan.form if plan else {"time_zone": found.time_zone if found else "UTC"},
        "errors": plan.errors if plan else {},
        "problems": problems or {},
        "flags": request.query_params,
    }
    return render(request, "authors/founding.html", context, 422 if plan or problems else 200)


@signed_in
async def founding_page(request: Request, author: Author) -> Response:
    return await _page(request, author, request.path_params["slug"])


@signed_in
async def open_round(request: Request, author: Author) -> Response:
    slug = await posted_slug(request, FIELDS)
    try:
        async with db_session(request, write=True) as session:
            await rounds.open_round(session, Act(author, slug))
    except drafts.PublishRefused as refused:
        return await _page(request, author, slug, problems=refused.problems)
    return _here(request, slug, opened="1")


@signed_in
async def new_link(request: Request, author: Author) -> Response:
    slug = await posted_slug(request, FIELDS)
    async with db_session(request, write=True) as session:
        await rounds.new_link(session, Act(author, slug))
    return _here(request, slug, relinked="1")


@signed_in
async def close_round(request: Request, author: Author) -> Response:
    slug = await posted_slug(request, FIELDS)
    async with db_session(request, write=True) as session:
        discarded = await rounds.close_round(session, Act(author, slug))
    return _here(request, slug, closed=str(discarded))


@signed_in
async def plan_launch(request: Request, author: Author) -> Response:
    slug = request.path_params["slug"]
    form = await read_author_form(request, max_fields=FIELDS)
    act = Act(author, slug)
    try:
        if form.get("action") == "unplan":
            moment, zone = None, rounds.zone(form.get("time_zone")).key
        else:
            launch_at = form.get("launch_at")
            moment, zone = rounds.parse_launch(launch_at, form.get("time_zone"), act.now)
        async with db_session(request, write=True) as session:
            await rounds.schedule(session, act, moment, zone)
    except FormErrors as problem:
        return await _page(request, author, slug, plan=Refused(form, problem.errors))
    return _here(request, slug, planned="1" if moment else "0")


@signed_in
async def launch_now(request: Request, author: Author) -> Response:
    slug = await posted_slug(request, FIELDS)
    async with db_session(request, write=True) as session:
        await rounds.launch_now(session, Act(author, slug), settings_of(request))
    await forget_letter(request, slug)
    url = request.app.url_path_for("author_letter", slug=slug) + "?published=1"
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


def _post(path: str, view: Any, name: str) -> Route:
    return Route(f"/authors/letters/{{slug}}/founding/{path}", view, methods=["POST"], name=name)


routes = [
    Route("/authors/letters/{slug}/founding", founding_page, name="author_founding"),
    _post("open", open_round, "author_founding_open"),
    _post("link", new_link, "author_founding_link"),
    _post("close", close_round, "author_founding_close"),
    _post("plan", plan_launch, "author_founding_plan"),
    _post("launch", launch_now, "author_founding_launch"),
]
