"""create_app: routes, middleware, lifespan and error handlers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from letters import i18n, outbox
from letters.authors.closing import Closer
from letters.cache import TTLCache
from letters.cors import PublicDataCORSMiddleware
from letters.db import make_async_engine, make_sessionmaker, reader, writer
from letters.fastpath import FastReadMiddleware
from letters.i18n import N_, LocaleMiddleware
from letters.logs import silence_parameter_logging
from letters.mail import MailBackend, make_backend, make_mail_env
from letters.markdown import excerpt, render_markdown
from letters.oidc import oidc_client, oidc_state_middleware
from letters.openapi import openapi
from letters.public import LetterNotFound
from letters.security import BodyLimitMiddleware, SecurityHeadersMiddleware, csrf_token
from letters.settings import PROJECT_ROOT, Settings
from letters.snapshots import signing_key
from letters.tokens import Signer
from letters.views import (
    api,
    authors,
    drafting,
    history,
    language,
    ledger,
    letters,
    manage,
    moderation,
    press,
    verify,
)

logger = logging.getLogger("letters")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=PROJECT_ROOT / "templates")
    i18n.install(templates.env)
    templates.env.globals["csrf_token"] = csrf_token
    templates.env.globals["return_path"] = language.return_path
    templates.env.filters["markdown"] = render_markdown
    templates.env.filters["excerpt"] = excerpt
    return templates


def error_response(request: Request, status: int, code: str, message: str) -> Response:
    """A JSON error under /api/ (in English), an HTML page in the reader's language elsewhere.

    `message` is an English message marked with N_(): translated here for the page. The
    language is taken from the request, since a server error is answered outside the
    middleware that chose it.
    """
    headers = {"Cache-Control": "no-store"}
    if request.url.path.startswith("/api/"):
        body = {"error": {"code": code, "message": message, "field": None}}
        return JSONResponse(body, status_code=status, headers=headers)
    templates: Jinja2Templates = request.app.state.templates
    with i18n.using(i18n.of(request.scope)):
        # The language links lead home, never back to the address that failed.
        context = {"status": status, "message": i18n.gettext(message), "here": "/"}
        return templates.TemplateResponse(
            request, "errors/error.html", context, status_code=status, headers=headers
        )


HTTP_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
# The detail of an error Starlette raises itself (a wrong method), marked for translation.
STARLETTE_DETAILS = (N_("Method Not Allowed"),)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else N_("There is nothing at this address.")
    response = error_response(
        request, exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(message)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


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


def create_app(settings: Settings | None = None, mail: MailBackend | None = None) -> Starlette:
    settings = settings or Settings()
    silence_parameter_logging()
    i18n.load()
    templates = make_templates()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = make_async_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(reader(engine))
        app.state.writer = make_sessionmaker(writer(engine))
        sender = None
        if settings.mail_in_app:
            sender = outbox.Sender(app.state.writer, app.state.mail)
            sender.start()
        closer = Closer(app.state.writer)  # Authors: letters close on their closing date
        closer.start()
        try:
            yield
        finally:
            await closer.stop()
            if sender is not None:
                await sender.stop()
            await engine.dispose()

    routes = [
        Route("/", letters.index, name="index"),
        Route("/letters/{slug}", letters.letter_page, name="letter"),
        Route("/letters/{slug}/sign", letters.sign, methods=["POST"], name="sign"),
        Route("/letters/{slug}/check-email", letters.check_email, name="check_email"),
        Route("/letters/{slug}/signatures", letters.signatures_page, name="signatures"),
        Route("/letters/{slug}/badge.svg", press.badge, name="badge"),
        Route("/letters/{slug}/tally", press.tally_page, name="tally"),
        Route("/letters/{slug}/widget", press.widget, name="widget"),
        Route("/api/letters/{slug}/signatures.csv", press.signatures_csv, name="signatures_csv"),
        Route("/api/letters/{slug}/daily.csv", press.daily_csv, name="daily_csv"),
        # The checkable record: ledger, signed snapshots and their key, receipts.
        Route("/api/letters/{slug}/ledger", ledger.ledger_download, name="api_ledger"),
        Route("/api/letters/{slug}/snapshot", ledger.snapshot, name="api_snapshot"),
        Route("/.well-known/jwks.json", ledger.jwks, name="jwks"),
        Route("/letters/{slug}/receipt", ledger.receipt, methods=["GET", "POST"], name="receipt"),
        # Two routes, not one view switching on the method: only a POST may confirm, and
        # GET and HEAD (which mail scanners send) can never fall through to it.
        Route("/verify/{token}", verify.verify_page, methods=["GET"], name="verify"),
        Route("/verify/{token}", verify.verify_confirm, methods=["POST"], name="verify_confirm"),
        # Signer control (manage links)
        Route("/letters/{slug}/manage", manage.request_page, methods=["GET"], name="manage_ask"),
        Route(
            "/letters/{slug}/manage", manage.request_link, methods=["POST"], name="manage_request"
        ),
        Route("/letters/{slug}/manage/sent", manage.link_sent, name="manage_sent"),
        Route("/manage/{token}", manage.manage_page, methods=["GET"], name="manage"),
        Route("/manage/{token}", manage.manage_action, methods=["POST"], name="manage_action"),
        # Authors
        Route("/letters/{slug}/history", history.history, name="history"),
        Route("/letters/{slug}/history/{number:int}", history.version_page, name="letter_version"),
        Route("/authors", authors.home, name="author_home"),
        Route("/authors/sign-in", authors.sign_in, methods=["GET", "POST"], name="author_sign_in"),
        Route("/authors/sign-in/sent", authors.sign_in_sent, name="author_sign_in_sent"),
        # As for signers: GET shows a button, only POST uses the link.
        Route("/authors/sign-in/{token}", authors.link_page, methods=["GET"], name="author_link"),
        Route(
            "/authors/sign-in/{token}",
            authors.link_confirm,
            methods=["POST"],
            name="author_link_confirm",
        ),
        Route("/authors/sign-out", authors.sign_out, methods=["POST"], name="author_sign_out"),
        Route("/authors/oidc/start", authors.oidc_start, name="author_oidc_start"),
        Route("/authors/oidc/callback", authors.oidc_callback, name="author_oidc_callback"),
        Route("/authors/admin", authors.admin, methods=["GET", "POST"], name="author_admin"),
        Route(
            "/authors/letters/new", drafting.new_letter, methods=["GET", "POST"], name="author_new"
        ),
        Route("/authors/letters/{slug}", drafting.overview, name="author_letter"),
        Route(
            "/authors/letters/{slug}/edit",
            drafting.edit,
            methods=["GET", "POST"],
            name="author_edit",
        ),
        Route("/authors/letters/{slug}/preview", drafting.preview, name="author_preview"),
        Route(
            "/authors/letters/{slug}/publish",
            drafting.publish,
            methods=["POST"],
            name="author_publish",
        ),
        Route(
            "/authors/letters/{slug}/close", drafting.close, methods=["POST"], name="author_close"
        ),
        Route(
            "/authors/letters/{slug}/reopen",
            drafting.reopen,
            methods=["POST"],
            name="author_reopen",
        ),
        Route(
            "/authors/letters/{slug}/settings",
            drafting.settings_page,
            methods=["GET", "POST"],
            name="author_settings",
        ),
        Route(
            "/authors/letters/{slug}/revise",
            drafting.revise,
            methods=["GET", "POST"],
            name="author_revise",
        ),
        Route(
            "/authors/letters/{slug}/authors",
            drafting.authors_page,
            methods=["GET", "POST"],
            name="author_authors",
        ),
        Route(
            "/authors/letters/{slug}/authors/{author_id:int}/remove",
            drafting.remove_author,
            methods=["POST"],
            name="author_remove",
        ),
        Route(
            "/authors/letters/{slug}/signatures", moderation.signatures, name="author_signatures"
        ),
        Route(
            "/authors/letters/{slug}/signatures/{signature_id:int}/hide",
            moderation.hide,
            methods=["POST"],
            name="author_hide",
        ),
        Route(
            "/authors/letters/{slug}/signatures/{signature_id:int}/invalidate",
            moderation.invalidate,
            methods=["GET", "POST"],
            name="author_invalidate",
        ),
        Route("/authors/letters/{slug}/audit", moderation.audit_log, name="author_audit"),
        Route("/authors/letters/{slug}/export", moderation.export_page, name="author_export"),
        Route(
            "/authors/letters/{slug}/export.csv",
            moderation.export_csv,
            name="author_export_csv",
        ),
        Route("/api/openapi.json", openapi, name="openapi"),
        Route("/api/letters", api.list_letters, name="api_letters"),
        Route("/api/letters/{slug}", api.letter_detail, name="api_letter"),
        Route("/api/letters/{slug}/events", api.events, name="api_events"),
        Route(
            "/api/letters/{slug}/signatures",
            api.signatures,
            methods=["GET", "POST"],
            name="api_signatures",
        ),
        Route("/api/verify", api.verify, methods=["POST"], name="api_verify"),
        Route("/healthz", health, name="health"),
        Route("/language/{code}", language.switch, name="language"),
        Mount("/static", StaticFiles(directory=PROJECT_ROOT / "static"), name="static"),
    ]
    cache = TTLCache(settings.cache_seconds, remember=(LetterNotFound,))
    signer = Signer(settings.secret_key)
    secure_cookies = settings.base_url.startswith("https")
    middleware = [
        # Outermost: the reader's language, which the fast path's answers depend on.
        Middleware(LocaleMiddleware),
        # Then: replays cached answers to readers before any other work.
        Middleware(FastReadMiddleware, cache=cache, signer=signer, secure_cookies=secure_cookies),
        Middleware(SecurityHeadersMiddleware, secure_cookies=secure_cookies),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        Middleware(PublicDataCORSMiddleware),
    ]
    if settings.oidc_enabled:  # Authors: single sign-on keeps its state in a signed cookie
        middleware.append(oidc_state_middleware(settings))
    exception_handlers: dict[Any, Any] = {
        HTTPException: http_exception,
        OperationalError: database_unavailable,
        InterfaceError: database_unavailable,
        Exception: server_error,
    }
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.cache = cache
    templates.env.globals["path_for"] = app.url_path_for
    app.state.templates = templates
    app.state.mail_env = make_mail_env()
    app.state.signer = signer
    app.state.snapshot_key = signing_key(settings.secret_key)
    app.state.mail = mail or make_backend(settings)
    app.state.oidc = oidc_client(settings)
    return app


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
