"""The author's home: their letters (and, for an admin, every public letter, which they may
join), and the admin page where admins allow new authors and watch the mail's health."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from letters.authors import accounts, coauthors
from letters.authors.access import Act, my_letters, require_admin
from letters.forms import FieldError
from letters.i18n import N_, gettext
from letters.mail import tallies
from letters.models import Author, utcnow
from letters.web.common import NO_STORE, db_session
from letters.web.workspace.session import read_author_form, render, signed_in


@signed_in
async def home(request: Request, author: Author) -> Response:
    async with db_session(request) as session:
        letters = await my_letters(session, author)
        others = await coauthors.public_letters(session, author) if author.is_admin else []
    return render(request, "authors/dashboard.html", {"letters": letters, "others": others})


@signed_in
async def join(request: Request, author: Author) -> Response:
    """An admin becomes an author of a public letter, then lands on its page."""
    slug = request.path_params["slug"]
    async with db_session(request, write=True) as session:
        await coauthors.join(session, Act(author, slug))
    url = request.app.url_path_for("author_letter", slug=slug)
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


@signed_in
async def admin(request: Request, author: Author) -> Response:
    """Admins allow new authors, and stop them starting letters."""
    require_admin(author)
    errors: dict[str, str] = {}
    status = 200
    notice = ""
    if request.method == "POST":
        form = await read_author_form(request)
        async with db_session(request, write=True) as session:
            try:
                if form.get("action") == "add":
                    email = accounts.normalize_email(form.get("email"))
                    await accounts.add_author(session, email, can_create=True)
                    notice = gettext("%(email)s can now sign in and start letters.", email=email)
                else:
                    target = form.get("author_id", "")
                    if not target.isascii() or not target.isdigit() or len(target) > 9:
                        raise HTTPException(400, N_("Choose an author."))
                    allowed = form.get("action") == "allow"
                    changed = await accounts.set_can_create(session, int(target), allowed)
                    if changed is None:
                        raise HTTPException(404)
                    if changed.can_create:
                        notice = gettext("%(email)s can start letters.", email=changed.email)
                    else:
                        notice = gettext(
                            "%(email)s can no longer start letters.", email=changed.email
                        )
                await session.commit()
            except FieldError as error:
                errors[error.field] = error.message
                status = 422
    async with db_session(request) as session:
        authors = await accounts.list_authors(session)
        mail = await tallies.summary(session, utcnow())
    context = {"authors": authors, "errors": errors, "notice": notice, "mail": mail}
    return render(request, "authors/admin.html", context, status)


routes = [
    Route("/authors", home, name="author_home"),
    Route("/authors/admin", admin, methods=["GET", "POST"], name="author_admin"),
    Route("/authors/letters/{slug}/join", join, methods=["POST"], name="author_join"),
]
