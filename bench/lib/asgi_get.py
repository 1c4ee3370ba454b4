"""One GET straight into an ASGI app, for the in-process CPU benchmarks (no client, no sockets).

``retrieve_cpu.py`` and ``request_overhead.py`` both measure the app's own CPU per request; this
is the request they send: the body is counted and discarded, and the client goes away (as a
server would report) once the answer is complete.
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


async def asgi_get(
    app: App, path: str, *, query: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, int]:
    """``(status, body length)`` of ``GET path?query`` with ``headers``."""
    done = asyncio.Event()
    requested = False
    status, size = 0, 0

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    scope: Message = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, receive, send)
    return status, size
