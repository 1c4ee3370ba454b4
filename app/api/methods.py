"""Methods per path: ``OPTIONS`` answers (CAP-02) and complete ``Allow`` headers on 405 (GEN-04).

Starlette answers a wrong method with 405, but its ``Allow`` names only the methods of the first
route whose path matched; ``/studies/{study}`` is three routes (GET retrieve, POST store, DELETE),
so the header would be incomplete. :class:`MethodsMiddleware` rewrites ``Allow`` on every 405 from
all routes of the path, and answers ``OPTIONS`` on any known path other than the service root with
204 and ``Allow`` (the root's ``OPTIONS`` is the capabilities resource, CAP-01, a real route).

A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, GEN-09) is
never answered here: it passes through untouched, so CORS handling (a middleware placed around
the app) decides it, and the capabilities route does not treat it as a capabilities request.
"""

from collections.abc import Iterable
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MethodsMiddleware", "allowed_methods", "is_preflight"]

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PROBE = ("GET", "POST", "PUT", "PATCH", "DELETE")


def is_preflight(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether raw ASGI request headers make an ``OPTIONS`` request a CORS preflight (GEN-09).

    >>> is_preflight([(b"origin", b"https://v"), (b"access-control-request-method", b"GET")])
    True
    >>> is_preflight([(b"origin", b"https://v")])
    False
    """
    names = {name.lower() for name, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


def allowed_methods(app: Any, path: str) -> list[str]:
    """The methods the app's routes accept on ``path`` (with OPTIONS), or [] if none matches.

    Asks each route through Starlette's public ``matches`` (so routers included in any way are
    covered). HEAD goes with GET (:mod:`app.api.head` answers it). DELETE is left out when
    deletion is disabled (``settings.allow_delete``, DEL-02).
    """
    methods: set[str] = set()
    for method in _PROBE:
        scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
        if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
            methods.add(method)
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    settings = getattr(app.state, "settings", None)
    if settings is not None and not settings.allow_delete:
        methods.discard("DELETE")
    methods.add("OPTIONS")
    return [m for m in _ORDER if m in methods]


class MethodsMiddleware:
    """OPTIONS on known paths (CAP-02) and complete Allow headers on 405 (GEN-04)."""

    def __init__(self, app: ASGIApp, *, root: str) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] == "OPTIONS" and not is_preflight(scope["headers"]):
            if path in (self.root, self.root + "/"):
                # the capabilities resource (CAP-01) is a route at "{root}/"; the scope is
                # changed in place, not copied, so that the middleware around (the audit's)
                # sees the route the router sets in it
                scope["path"] = self.root + "/"
                await self.app(scope, receive, send)
                return
            allow = allowed_methods(scope["app"], path)
            if allow:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", ", ".join(allow).encode("latin-1"))],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = allowed_methods(scope["app"], path)
                if allow:
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"
                    ]
                    headers.append((b"allow", ", ".join(allow).encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_allow)
