"""Author pages for what follows publication: deliver the letter (by email from the
delivery sender, or recorded as delivered in person), and publish the recipient's reply
and later outcomes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.authors import campaign
from letters.authors.access import Act, letter_for
from letters.authors.letter_form import MAX_BODY, FormErrors
from letters.models import Author, FollowUpKind, utcnow
from letters.record.public import follow_ups
from letters.web.common import NO_STORE, db_session, send_soon, settings_of
from letters.web.workspace.session import (
    Refused,
    forget_letter,
    read_author_form,
    render,
    signed_in,
)

DELIVERY_FIELDS = ("recipient", "method", "version", "to", "from_name", "reply_to", "delivered_on")


async def _page(request: Request, author: Author, slug: str, **refused: Refused) -> Response:
    """The deliveries so far and the two forms, `form` and `follow_form`: the one named in
    `refused` as it was sent back."""
    async with db_session(request) as session:
        letter = (await letter_for(session, author, slug)).letter
        done = await campaign.deliveries(session, letter)
        published = await follow_ups(session, letter)
    today = utcnow().date().isoformat()
    context = {
        "letter": letter,
        "deliveries": done,
        "follow_ups": published,
        "can_email": bool(settings_of(request).delivery_from),
        "delivery_from": settings_of(request).delivery_from,
        "form": {"version": str(letter.version), "reply_to": author.email},
        "follow_form": {"kind": FollowUpKind.reply, "happened_on": today},
        "errors": {},
        "done": request.query_params.get("done", ""),
        "today": today,
        "max_text": MAX_BODY,
    }
    for name, sent in refused.items():
        context |= {name: sent.form, "errors": sent.errors}
    return render(request, "authors/delivery.html", context, 422 if refused else 200)


def _back(request: Request, slug: str, done: str) -> Response:
    url = str(request.app.url_path_for("author_delivery", slug=slug)) + f"?done={done}"
    return RedirectResponse(url, 303, headers=NO_STORE)


@signed_in
async def delivery_page(request: Request, author: Author) -> Response:
    """GET: the deliveries so far, and the forms. POST: record (and send) a delivery."""
    slug = request.path_params["slug"]
    if request.method == "GET":
        return await _page(request, author, slug)
    form = await read_author_form(request)
    act = Act(author, slug)
    try:
        async with db_session(request) as session:
            letter = (await act.access(session)).letter
        parsed = campaign.parse_delivery(form, letter, settings_of(request), act.now.date())
        async with db_session(request, write=True) as session:
            _, outbox_id = await campaign.deliver(
                session,
                act,
                parsed,
                key=request.app.state.snapshot_key,
                settings=settings_of(request),
            )
    except FormErrors as problem:
        shown = {name: form.get(name, "") for name in DELIVERY_FIELDS}
        return await _page(request, author, slug, form=Refused(shown, problem.errors))
    await forget_letter(request, slug)
    response = _back(request, slug, "delivered")
    response.background = send_soon(request, outbox_id)
    return response


@signed_in
async def follow_up(request: Request, author: Author) -> Response:
    """POST: publish the recipient's reply, or an outcome."""
    slug = request.path_params["slug"]
    form = await read_author_form(request)
    act = Act(author, slug)
    try:
        async with db_session(request) as session:
            letter = (await act.access(session)).letter
        parsed = campaign.parse_follow_up(form, letter, act.now.date())
        async with db_session(request, write=True) as session:
            await campaign.publish_follow_up(session, act, parsed)
    except FormErrors as problem:
        shown = {name: form.get(name, "") for name in ("kind", "happened_on", "source", "text")}
        return await _page(request, author, slug, follow_form=Refused(shown, problem.errors))
    await forget_letter(request, slug)
    return _back(request, slug, str(parsed.kind))


routes = [
    Route(
        "/authors/letters/{slug}/delivery",
        delivery_page,
        methods=["GET", "POST"],
        name="author_delivery",
    ),
    Route(
        "/authors/letters/{slug}/follow-up", follow_up, methods=["POST"], name="author_follow_up"
    ),
]
