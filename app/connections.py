"""Deadlines for the request head and body, and a cap on open connections.

uvicorn closes a connection only when it sits idle after a response (keep-alive). A client that
connects and sends nothing, or half a request line, or its headers a byte every few seconds,
holds its connection (and the half-parsed head) for ever; a body that stops half-way holds the
request, its spool file and its database session; and nothing bounds how many connections are
open. Two pieces close those holes, each through a public interface only:

- :class:`ConnectionGuard` is the HTTP protocol factory handed to uvicorn (``Config(http=...)``,
  uvicorn's own way of choosing the protocol). For each connection it builds uvicorn's protocol
  with the arguments uvicorn gave, without looking at them, and stands in front of it as a plain
  :class:`asyncio.Protocol`. It answers 503 to a connection beyond ``max_connections`` (per
  process), and closes one whose request head has not arrived ``header_timeout`` seconds after the
  connection opened, or after the first byte of a later request (408 when part of a head came).
  The wait between requests is uvicorn's keep-alive timeout, as before.
- :class:`RequestDeadlines` is an ASGI middleware. It tells the guard when a request starts (its
  head is complete: the head deadline no longer applies) and when its response is complete (the
  connection waits for the next request), and ends a request whose body stalls for
  ``body_timeout`` seconds with :class:`~app.errors.RequestTimeout` (408, ``Connection: close``):
  the STOW route aborts its ingest session on it, so nothing of the request is stored.

The middleware finds its connection's guard through a context variable that the guard sets
while uvicorn's protocol reads data: uvicorn starts the request's task there, and a task starts
with a copy of the context it was created in (uvicorn's ``reset_contextvars``, off by default,
would cut that link). The guard's work is a few attribute updates per read and per request,
never per byte.

Both survive a change of process manager: gunicorn's uvicorn workers and uvicorn's own workers
take the same protocol factory; under a server with its own head timeout and connection limit
(granian's ``http1_header_read_timeout`` and ``backpressure``) the middleware keeps the body
deadline on its own.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from app.errors import RequestTimeout

__all__ = ["ConnectionGuard", "ConnectionLimits", "RequestDeadlines"]

log = logging.getLogger("uvicorn.error")

#: after answering a connection it then closes (503, 408), how long to go on reading (and
#: dropping) what the client still sends before closing: closing a socket with unread data
#: resets the connection, and the client could lose the answer
_LINGER_SECONDS: Final = 2.0
#: at most one warning per this interval about connections refused over the cap
_WARN_EVERY_SECONDS: Final = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What :class:`ConnectionGuard` enforces."""

    #: seconds from a connection's start, or from the first byte of a later request, until the
    #: request head must be complete
    header_timeout: float
    #: open connections per process; more are answered 503 and closed
    max_connections: int


def _answer(status: int, reason: str, detail: str, *extra: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 response with an RFC 9457 problem body, closing the connection."""
    body = orjson.dumps({"status": status, "detail": detail})
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/problem+json"]
    head += [f"content-length: {len(body)}", "connection: close"]
    head += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class ConnectionGuard:
    """uvicorn's HTTP protocol factory (``Config(http=guard)``): builds uvicorn's protocol for
    each connection and guards it (:class:`_GuardedConnection`).

    It is pickled into each worker process with the server's configuration, so every process
    counts its own connections.
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        inner: Callable[..., asyncio.Protocol] = AutoHTTPProtocol,
    ) -> None:
        self.limits = limits
        #: the protocol guarded: what uvicorn would use without us (``http="auto"``)
        self.inner = inner
        #: connections of this process under way (refused ones are not counted)
        self.open = 0
        self._warned_at = 0.0

    def __call__(self, **kwargs: Any) -> asyncio.Protocol:
        """One connection's protocol; ``kwargs`` are uvicorn's, passed on untouched."""
        return _GuardedConnection(self, self.inner(**kwargs))

    def note_refused(self) -> None:
        """Say (not more than once in a while) that connections are being refused."""
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "%d connections open (server.max_connections): answering new ones 503",
                self.limits.max_connections,
            )


#: the guard of the connection whose data the server is reading (see the module's docstring)
_connection: contextvars.ContextVar["_GuardedConnection | None"] = contextvars.ContextVar(
    "lightbox_connection", default=None
)


class _GuardedConnection(asyncio.Protocol):
    """One connection: uvicorn's protocol behind the head deadline and the connection cap.

    Between requests (``_request == 0``) a request head is awaited: from the connection's start,
    and after a response from the first byte that comes, it has ``header_timeout`` seconds to be
    complete, that is, for :class:`RequestDeadlines` to see the request start. Bytes trickling in
    do not move that deadline. When the app answered without reading the whole body (401, 413),
    the rest of the body comes as if it were the next head: uvicorn drops it for at most
    ``header_timeout`` seconds, then the connection is closed.
    """

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        #: counted in ``guard.open``
        self._counted = False
        #: answered and closing: what the client sends is dropped
        self._closing = False
        #: part of a request head arrived since the deadline was set
        self._partial = False
        #: the request under way (its number on this connection), 0 between requests
        self._request = 0
        self._requests = 0

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # uvicorn's protocol sees every connection, refused ones too, so that its record of
        # open connections (graceful shutdown closes them) stays right
        self._inner.connection_made(transport)
        limits = self._guard.limits
        if self._guard.open >= limits.max_connections:
            self._guard.note_refused()
            detail = f"too many open connections (at most {limits.max_connections})"
            self._close_with(_answer(503, "Service Unavailable", detail, ("retry-after", "1")))
            return
        self._guard.open += 1
        self._counted = True
        self._expect_head()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._deadline is None and not self._request:
            self._expect_head()  # the first byte of the next request
        self._partial = True
        token = _connection.set(self)
        try:
            self._inner.data_received(data)
        finally:
            _connection.reset(token)

    def eof_received(self) -> bool | None:
        if self._closing:
            return False  # the client read our answer and closed: close too
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # --- told by RequestDeadlines -----------------------------------------------------------

    def request_started(self) -> int:
        """The request's head is complete and the app has it: no head deadline until it ends."""
        self._cancel_deadline()
        self._requests += 1
        self._request = self._requests
        return self._request

    def request_done(self, request: int) -> None:
        """The response of ``request`` is complete (a later pipelined one may have started)."""
        if self._request == request:
            self._request = 0

    # --- deadlines --------------------------------------------------------------------------

    def _expect_head(self) -> None:
        self._partial = False
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.limits.header_timeout, self._head_late)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        if self._request or self._closing or self._transport is None:
            return
        if not self._partial:  # nothing came at all: close as an idle connection is closed
            self._transport.close()
            return
        timeout = self._guard.limits.header_timeout
        log.debug("closing a connection whose request head took longer than %s s", timeout)
        detail = f"the request head did not arrive within {timeout:g} s"
        self._close_with(_answer(408, "Request Timeout", detail))

    def _close_with(self, answer: bytes) -> None:
        """Send ``answer``, then close once the client has closed, or after a short linger."""
        transport = self._transport
        assert transport is not None
        self._closing = True
        self._cancel_deadline()
        transport.write(answer)
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        transport.write_eof()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(_LINGER_SECONDS, transport.close)


class RequestDeadlines:
    """ASGI middleware: reports each request's start and end to its connection's guard, and
    ends a request whose body stalls for ``body_timeout`` seconds (408, connection closed).

    The body deadline runs only while the app waits for more of the body: once the body is
    complete, waiting for a disconnect (a streamed response does) is no stall.
    """

    def __init__(self, app: ASGIApp, *, body_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = _connection.get()
        request = connection.request_started() if connection is not None else 0
        body_pending = True
        stalled = False
        started = False

        async def receive_in_time() -> Message:
            nonlocal body_pending, stalled
            if not body_pending:
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                stalled = True
                raise RequestTimeout(
                    f"the request body stalled: nothing came for {self.body_timeout:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if stalled:  # the rest of the body may still come: do not read it as a request
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)
            if (
                connection is not None
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                connection.request_done(request)

        try:
            await self.app(scope, receive_in_time, send_closing)
        except RequestTimeout as exc:  # raised where no exception handler answered it
            if started:
                raise
            body = orjson.dumps({"status": exc.http_status, "detail": exc.message})
            headers = [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send_closing(
                {"type": "http.response.start", "status": exc.http_status, "headers": headers}
            )
            await send_closing({"type": "http.response.body", "body": body})
        finally:
            if connection is not None:
                connection.request_done(request)
