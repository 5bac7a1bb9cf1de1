"""create_app: the settings, the routes of each area, the middleware and the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from letters import i18n, jobs
from letters.db import make_async_engine, make_sessionmaker, reader, writer
from letters.mail.backend import MailBackend, make_backend
from letters.record.floods import FloodWatch
from letters.record.public import LetterNotFound
from letters.record.snapshots import signing_key
from letters.resources import STATIC
from letters.settings import Settings
from letters.tokens import Signer
from letters.web import (
    api,
    assets,
    errors,
    fastpath,
    feeds,
    founders,
    health,
    history,
    language,
    pages,
    press,
    proof,
    share,
    signer,
    verify,
)
from letters.web.cache import TTLCache, rules_seconds
from letters.web.common import make_templates
from letters.web.cors import PublicDataCORSMiddleware
from letters.web.logs import silence_parameter_logging
from letters.web.oidc import oidc_client, oidc_state_middleware
from letters.web.openapi import openapi
from letters.web.routing import RouteIndex
from letters.web.security import BodyLimitMiddleware, SecurityHeadersMiddleware
from letters.web.workspace import delivering, drafting, home, launching, sign_in, signatures


def make_routes() -> list[BaseRoute]:
    return [
        *pages.routes,
        *press.routes,
        *proof.routes,
        *verify.routes,
        *founders.routes,
        *signer.routes,
        *history.routes,
        *feeds.routes,
        *share.routes,
        *home.routes,
        *sign_in.routes,
        *drafting.routes,
        *launching.routes,
        *signatures.routes,
        *delivering.routes,
        Route("/api/openapi.json", openapi, name="openapi"),
        *api.routes,
        *health.routes,
        *language.routes,
        *assets.routes,
        Mount("/static", assets.Static(directory=STATIC), name="static"),
    ]


def create_app(settings: Settings | None = None, mail: MailBackend | None = None) -> Starlette:
    settings = settings or Settings()
    silence_parameter_logging()
    i18n.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = make_async_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(reader(engine))
        app.state.writer = make_sessionmaker(writer(engine))
        app.state.prepare = jobs.preparer(settings, app.state.writer)
        tasks = jobs.in_app(settings, app.state.writer, app.state.mail)
        runners = [task for task in tasks if isinstance(task, jobs.JobRunner)]
        app.state.job_runner = runners[0] if runners else None
        for task in tasks:
            task.start()
        try:
            yield
        finally:
            for task in tasks:
                await task.stop()
            await engine.dispose()

    routes = make_routes()
    cache = TTLCache(settings.cache_seconds, remember=(LetterNotFound,))
    signing = Signer(settings.secret_key, settings.keys.older)
    secure_cookies = settings.base_url.startswith("https")
    choose = language.Chooser(
        neutral=RouteIndex(routes, language.NEUTRAL),
        in_path=RouteIndex(routes, language.IN_PATH),
    )
    middleware = [
        # Outermost: replays cached answers to readers before any other work (it chooses
        # the reader's language, which its answers depend on, and compresses what it keeps
        # once, so a replay passes through no compression layer).
        Middleware(
            fastpath.FastReadMiddleware,
            store=cache,
            routes=RouteIndex(routes, fastpath.ROUTES),
            choose=choose,
        ),
        # Then compression, of every answer to a GET that is not a replay (the fast path
        # keeps a compressed answer plain, and compresses its own copy once).
        Middleware(assets.CompressReads),
        Middleware(language.LocaleMiddleware, choose=choose),
        Middleware(SecurityHeadersMiddleware, secure_cookies=secure_cookies),
        Middleware(
            BodyLimitMiddleware,
            max_bytes=settings.max_body_bytes,
            read_timeout=settings.body_read_timeout,
        ),
        Middleware(PublicDataCORSMiddleware, routes=RouteIndex(routes, language.NEUTRAL)),
    ]
    if settings.oidc_enabled:  # Authors: single sign-on keeps its state in a signed cookie
        middleware.append(oidc_state_middleware(settings))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=errors.handlers,
        lifespan=lifespan,
    )
    templates = make_templates()
    templates.env.globals["path_for"] = assets.path_for(app.url_path_for)
    templates.env.globals["event_title"] = feeds.event_title
    app.state.settings = settings
    app.state.cache = cache
    app.state.event_streams = api.OpenStreams()
    app.state.floods = FloodWatch()
    app.state.rules = TTLCache(rules_seconds(settings.cache_seconds), remember=(LetterNotFound,))
    app.state.templates = templates
    app.state.signer = signing
    app.state.snapshot_key = signing_key(settings.secret_key)
    # Published beside it, so snapshots signed before a key change still verify.
    app.state.older_snapshot_keys = [signing_key(secret) for secret in settings.keys.older]
    app.state.mail = mail or make_backend(settings)
    app.state.oidc = oidc_client(settings)
    return app
