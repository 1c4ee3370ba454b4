"""The body deadline of :class:`app.connections.RequestDeadlines` on a bare ASGI app, and the
protocol factory's trip to a worker process (pickled with uvicorn's configuration). The head
deadline and the connection cap are shown on a real server in tests/e2e/test_connections.py."""

import asyncio
import pickle
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from app.connections import ConnectionGuard, ConnectionLimits, RequestDeadlines
from app.errors import RequestTimeout

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}


class Client:
    """The server's side of one request: what the client sends, what the app answered."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def read_body(_scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_stalled_body_ends_the_request_with_408_and_close() -> None:
    client = Client()
    client.incoming.put_nowait({"type": "http.request", "body": b"half", "more_body": True})
    app = RequestDeadlines(read_body, body_timeout=0.2)
    await asyncio.wait_for(app(SCOPE, client.receive, client.send), 5)
    start, body = client.sent
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert b"request body stalled" in body["body"]


async def test_the_app_sees_the_stall_as_request_timeout() -> None:
    """Its handlers turn it into a problem response (STOW aborts its session on it)."""
    seen: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await read_body(scope, receive, send)
        except RequestTimeout as exc:
            seen.append(exc)
            await send({"type": "http.response.start", "status": 408, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    client = Client()
    await asyncio.wait_for(
        RequestDeadlines(app, body_timeout=0.1)(SCOPE, client.receive, client.send), 5
    )
    assert len(seen) == 1
    assert (b"connection", b"close") in client.sent[0]["headers"]


async def test_no_deadline_once_the_body_is_complete() -> None:
    """A streamed response waits for a disconnect for as long as it streams."""

    async def stream(_scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["more_body"] is False
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.body", "body": b"done"})

    client = Client()
    client.incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    asyncio.get_running_loop().call_later(
        0.5, client.incoming.put_nowait, {"type": "http.disconnect"}
    )
    await asyncio.wait_for(
        RequestDeadlines(stream, body_timeout=0.1)(SCOPE, client.receive, client.send), 5
    )
    assert [m.get("status") for m in client.sent] == [200, None]
    assert client.sent[1]["body"] == b"done"


def test_guard_pickles_for_the_worker_processes() -> None:
    """uvicorn's own workers send the configuration to spawned processes (gunicorn forks, and
    needs no copy): the guard goes with it."""
    guard = ConnectionGuard(ConnectionLimits(header_timeout=5, max_connections=10))
    copy = pickle.loads(pickle.dumps(guard))
    assert copy.limits == guard.limits
    assert copy.inner is guard.inner
    assert copy.open == 0
