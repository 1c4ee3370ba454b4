"""``HEAD`` on every ``GET`` resource (RFC 9110 §9.3.2): the GET's status and headers, no body.

Routes are declared for GET only, so the OpenAPI document and the capabilities resource describe
each operation once. :class:`HeadMiddleware` runs a HEAD request as its GET through the whole
app: the same access control (a HEAD needs ``read``, as the GET does), negotiation, ETag and
Content-Length, and the same 401/403/404/405/406 answers. Only the body is dropped.

The audit middleware outside it still sees ``HEAD`` (the request's own scope is not rewritten;
what the router adds to the GET's scope, such as the route and the path parameters, is copied
back to it), so a HEAD is recorded as such, not as a data read.

The work behind the body is stopped where it can be: a streamed body (WADO-RS multipart, a
stored file) ends at its first chunk, as if the client had gone away. A body built before the
response starts (a rendering, a metadata document) is built, then dropped: the GET's headers,
Content-Length among them, need it.
"""

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadMiddleware"]

#: scope keys that belong to the request itself, never copied back from the GET's scope
_OWN: Final = frozenset({"method"})


class _BodyDropped(Exception):
    """Raised into a streamed GET's producer once the HEAD response is complete."""


class HeadMiddleware:
    """Answer ``HEAD`` by running the ``GET`` of the same URL and sending its head only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # the state dict is shared, so what the routes note in it reaches the audit record
        scope.setdefault("state", {})
        get = {**scope, "method": "GET"}
        finished = False

        async def send_head(message: Message) -> None:
            nonlocal finished
            if finished:
                raise _BodyDropped
            if message["type"] == "http.response.start":
                await send(message)
                return
            # the first message of the body (in whatever form) ends the HEAD response
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if message.get("more_body", False):
                raise _BodyDropped  # a streamed body: stop producing it

        try:
            await self.app(get, receive, send_head)
        except _BodyDropped:
            pass
        finally:
            scope.update((key, value) for key, value in get.items() if key not in _OWN)
