"""Security headers of the web pages (issue 22, point 7).

Every HTML response, pages and a structured report rendered as ``text/html`` by the DICOMweb
root alike, gets a Content-Security-Policy without ``'unsafe-inline'`` or ``'unsafe-eval'``:
scripts, styles, fonts and connections from our own origin only, images also from ``data:`` and
``blob:`` URLs (thumbnails and frames drawn by the viewer), no plugins, no ``<base>``, forms
posting to us only, and no framing by anyone (``frame-ancestors 'none'``, with
``X-Frame-Options`` for old browsers). With it: ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer`` (a page's URL may name a study), ``Cross-Origin-Opener-Policy``,
and ``Cache-Control: no-store`` unless the route chose its caching (pages can show patient data;
the back button must not bring them back after signing out).

The other responses outside the DICOMweb root and ``/api`` (static files) get ``nosniff``,
the referrer policy and the framing refusal; DICOMweb and API responses are left as they are
(their hot paths pay nothing but this check). A route that sends its own
Content-Security-Policy (a viewer that needs more) keeps it. FastAPI's API documentation pages
(``/docs``, ``/redoc``, only when ``auth.public_api_docs`` is on) load their scripts from a CDN
and are left alone.
"""

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "PageHeaders"]

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_COMMON: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_HTML: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
_UNTOUCHED: Final = ("/docs", "/redoc")


class PageHeaders:
    """Adds the security headers above to the responses they are for."""

    def __init__(self, app: ASGIApp, *, api_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.api_prefixes = tuple(p for p in api_prefixes if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_UNTOUCHED):
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(self.api_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                html = content_type.lower().startswith(b"text/html")
                if html or not api:
                    added = [h for h in _COMMON if h[0] not in names]
                    if html:
                        added += [h for h in _HTML if h[0] not in names]
                        if b"cache-control" not in names:
                            added.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)
