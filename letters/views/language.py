"""The language switcher: links in every page's footer that set the `lang` cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from letters import i18n
from letters.views.common import settings_of


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site, else the home page: never another site.

    Browsers read `//host`, `/\\host` and `https://host` as other sites, and drop tabs and
    line breaks before reading, so anything like them is refused.
    """
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(char) < 0x21 or ord(char) == 0x7F for char in value)
    ):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


async def switch(request: Request) -> Response:
    """`GET /language/{code}?next=/path`: remember the reader's language, go back to the page.

    A plain link, so it works without JavaScript; the choice lasts a year.
    """
    code = request.path_params["code"]
    if code not in i18n.LANGUAGES:
        raise HTTPException(404)
    target = local_path(request.query_params.get("next"))
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        i18n.COOKIE,
        code,
        max_age=i18n.COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings_of(request).base_url.startswith("https"),
    )
    return response


@pass_context
def return_path(context: Context) -> str:
    """Where a language link in the footer brings the reader back to.

    Pages cached for every reader say it themselves (`here`); otherwise it is the address
    of this request, or, after a form was posted, that address if it can be read with a
    GET, else the home page.
    """
    here = context.get("here")
    if isinstance(here, str):
        return here
    request = context.get("request")
    if not isinstance(request, Request):
        return "/"
    path = request.url.path
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return f"{path}?{query}" if query else path
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
        return path
    return "/"
