"""Answers for what went wrong: a JSON error under /api/ (in English), an HTML page in the
reader's language elsewhere; 503 while the database is away; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from letters import i18n
from letters.i18n import N_
from letters.record.public import LetterNotFound
from letters.web import is_api
from letters.web.common import render
from letters.web.language import of as language_of

logger = logging.getLogger("letters")

HTTP_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
# The detail of an error Starlette raises itself (a wrong method), marked for translation.
STARLETTE_DETAILS = (N_("Method Not Allowed"),)
NOT_FOUND = N_("There is nothing at this address.")


def error_response(request: Request, status: int, code: str, message: str) -> Response:
    """`message` is an English message marked with N_(): translated here for the page. The
    language is taken from the request, since a server error is answered outside the
    middleware that chose it.
    """
    headers = {"Cache-Control": "no-store"}
    if is_api(request.url.path):
        body = {"error": {"code": code, "message": message, "field": None}}
        return JSONResponse(body, status_code=status, headers=headers)
    with i18n.using(language_of(request.scope)):
        # The language links lead home, never back to the address that failed.
        context = {"status": status, "message": i18n.gettext(message), "here": "/"}
        return render(request, "errors/error.html", context, status, headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else NOT_FOUND
    response = error_response(
        request, exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(message)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def letter_not_found(request: Request, exc: Exception) -> Response:
    """No such letter, or a draft: the same 404 as any address with nothing at it."""
    return error_response(request, 404, "not_found", NOT_FOUND)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    logger.error("database unavailable: %s", type(exc).__name__)
    response = error_response(
        request, 503, "unavailable", N_("The service is briefly unavailable. Please try again.")
    )
    response.headers["Retry-After"] = "5"
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    # Only the exception type: messages can carry request data.
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(request, 500, "server_error", N_("Something went wrong on our side."))


handlers: dict[Any, Any] = {
    HTTPException: http_exception,
    LetterNotFound: letter_not_found,
    OperationalError: database_unavailable,
    InterfaceError: database_unavailable,
    # Every pooled connection stayed busy for the pool's whole timeout (overload): the
    # same answer, a 503 to retry, rather than a 500.
    PoolTimeout: database_unavailable,
    Exception: server_error,
}
