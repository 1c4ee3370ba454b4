"""Security on the application: the audit middleware inside, CORS outermost, and the bearer
scheme in the OpenAPI document."""

from typing import Any, Final

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.api.security.access import ANONYMOUS_ROUTE, PERMISSION_KEY
from app.api.security.middleware import AuditMiddleware
from app.api.security.sessions import SessionRenewal
from app.config import Settings

__all__ = ["EXPOSED_HEADERS", "install_security"]

EXPOSED_HEADERS: Final = [
    "Warning",
    "Content-Location",
    "Content-Type",
    "Location",
    "X-Total-Count",
    "X-Request-ID",
]


def _document_security(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document, on every operation but anonymous ones."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and (
                    operation.get(PERMISSION_KEY) != ANONYMOUS_ROUTE
                ):
                    operation["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Audit middleware inside, the session cookie's renewal around it, CORS outermost (a
    preflight is answered before anything else)."""
    _document_security(app)
    app.add_middleware(
        AuditMiddleware,
        root=settings.dicomweb_root,
        resource_policy=settings.cors.resource_policy or None,
        trusted_proxies=frozenset(settings.trusted_proxies),
        audit=settings.auth.audit_enabled,
    )
    app.add_middleware(SessionRenewal)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors.allow_origins,
        # PUT: the admin API updates a remote AE (/api/aes/{title})
        allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Accept", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=settings.cors.max_age,
    )
