"""The HTTP application: ``create_app(settings)`` builds it (DESIGN.md §1).

Run it with ``lightbox serve`` or ``uvicorn --factory app.main:create_app`` (the app's own body
deadline applies either way; the request head deadline and the connection cap come with
``lightbox serve``, see ``app.connections``). The lifespan opens the services once per process;
routes reach them through ``app.api.deps``.
"""

import contextlib
import gc
import logging
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import __version__
from app.api import (
    aes,
    audit,
    capabilities,
    delete,
    docs,
    health,
    jobs,
    metrics,
    qido,
    rendered,
    stats,
    stow,
    tokens,
    wado,
    wado_uri,
)
from app.api.errors import install_error_handlers
from app.api.head import HeadMiddleware
from app.api.methods import MethodsMiddleware
from app.api.observe import ObserveMiddleware
from app.api.security import authorize, build_verifier, install_security
from app.config import Settings
from app.connections import RequestDeadlines
from app.dimse.pull import DimsePullSources
from app.logs import configure_logging, quiet_codec_logs
from app.services.container import Services, open_services
from app.services.metrics import process_started
from app.web import add_page_headers, install_web

log = logging.getLogger(__name__)


def _freeze_startup_objects() -> None:
    """Keep what starting made (modules, the app and its routes, pools, codecs: some 160,000
    objects) out of the garbage collector's full collections.

    Without it, each full collection walked all of them: 60 ms during which the process served
    nothing, every few seconds under load (objects that outlive a request, such as audit events
    waiting for their batch, bring the next one closer). Frozen objects are still freed by
    reference counting; only cycles among them wait for :func:`gc.unfreeze` at shutdown.
    """
    gc.collect()
    gc.freeze()


async def token_hint(settings: Settings, services: Services) -> None:
    """Say how to get an admin token, on every start while none is active (a new install, or
    every admin token expired or revoked): without one, nothing but the health checks answers."""
    if not settings.auth.local_key:
        return
    try:
        if await services.tokens.admin_exists():
            return
    except Exception as exc:  # the index is checked by /readyz; this is only advice
        log.warning("cannot tell whether an admin token exists: %s", exc)
        return
    data_dir = shlex.quote(str(settings.data_dir.resolve()))
    log.warning(
        "no admin token is active. Every route needs a bearer token; get an admin token with\n"
        "    lightbox token create --data-dir %s --subject admin"
        " --scope read --scope write --scope delete --scope admin --ttl 1d\n"
        "  (with this server's other LIGHTBOX_* settings, such as LIGHTBOX_DATABASE_URL), then"
        " send 'Authorization: Bearer <token>'. `lightbox token list` shows the tokens issued.",
        data_dir,
    )


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """The Lightbox ASGI app; ``services`` lets tests inject already-open services."""
    settings = settings if settings is not None else Settings()
    # a process whose logging is set up already (lightbox serve, a test runner) keeps it
    configure_logging(settings.log_level, settings.log_format)
    quiet_codec_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        if not settings.auth.enabled:
            log.warning(
                "access control is OFF (LIGHTBOX_AUTH__ENABLED=false): anyone can do anything"
            )
        if not settings.auth.audit_enabled:
            log.warning(
                "the audit trail is OFF (LIGHTBOX_AUTH__AUDIT_ENABLED=false): measurement only"
            )
        # pull jobs (POST /api/jobs/pull) fetch over DIMSE: composed here, because app.api
        # and app.dimse are independent front ends and app.services imports neither
        sources = DimsePullSources.from_settings(settings)
        try:
            async with open_services(settings, pull_sources=sources) as opened:
                if settings.auth.enabled:
                    # a bad key setup fails the start; revoked tokens are refused (the deny list)
                    app.state.verifier = build_verifier(
                        settings, revocations=opened.tokens.revocations
                    )
                    await token_hint(settings, opened)
                app.state.services = opened
                # the audit rows a previous run committed with its writes but did not chain (it
                # died in between) are chained now, by the writer, in the background
                await opened.audit.recover()
                if settings.metrics.enabled:
                    process_started(__version__)
                _freeze_startup_objects()
                try:
                    async with (
                        opened.metrics.sampling()
                        if settings.metrics.enabled
                        else contextlib.nullcontext(),
                        # gc, fsck, retention when scheduled: one process of all runs each
                        opened.housekeeping.running(),
                    ):
                        yield
                finally:
                    gc.unfreeze()
        finally:
            sources.close()

    app = FastAPI(
        title="Lightbox",
        version=__version__,
        summary="DICOMweb PACS: STOW-RS, QIDO-RS, WADO-RS (DICOM PS3.18)",
        lifespan=lifespan,
        # the API's description and its viewers are app.api.docs's routes (assets served
        # from here, the document open only with auth.public_api_docs, else to admins)
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # every route of every router is guarded, including routes added later (GEN-06)
        dependencies=[Depends(authorize)],
    )
    app.state.settings = settings
    if services is not None:
        app.state.services = services
    # added first, so CORS (install_security) wraps it and answers preflights before it
    app.add_middleware(MethodsMiddleware, root=settings.dicomweb_root)
    # HEAD runs as its GET inside the audit middleware, which still records it as a HEAD
    app.add_middleware(HeadMiddleware)
    install_security(app, settings)
    add_page_headers(app, settings)
    # its error boundary wraps all the middleware above (install_error_handlers)
    install_error_handlers(app)
    # the pages' error handlers wrap the API's: installed after them
    install_web(app, settings)
    # outside the error boundary, so it counts and logs the status the client got
    app.add_middleware(
        ObserveMiddleware, metrics=settings.metrics.enabled, access_log=settings.access_log
    )
    # outermost: the connection's head deadline ends as the request starts (app.connections)
    app.add_middleware(RequestDeadlines, body_timeout=settings.server.body_timeout)
    app.include_router(health.router)
    app.include_router(stow.router, prefix=settings.dicomweb_root)
    app.include_router(wado.router, prefix=settings.dicomweb_root)
    app.include_router(qido.router, prefix=settings.dicomweb_root)
    app.include_router(delete.router, prefix=settings.dicomweb_root)
    app.include_router(rendered.router, prefix=settings.dicomweb_root)
    app.include_router(wado_uri.router, prefix=settings.dicomweb_root)
    if settings.dicomweb_root:
        # WADO-URI's usual address is the server's root (PS3.18 §9: http://host/wado?...):
        # legacy integrations call /wado; the same route, described once in the OpenAPI document
        app.include_router(wado_uri.router, include_in_schema=False)
    app.include_router(capabilities.router, prefix=settings.dicomweb_root)
    app.include_router(audit.router)
    app.include_router(tokens.router)
    app.include_router(stats.router)
    if settings.metrics.enabled:
        app.include_router(metrics.router)
    app.include_router(aes.router)
    app.include_router(jobs.router)
    app.include_router(docs.docs_router(app, public=settings.auth.public_api_docs))
    return app
