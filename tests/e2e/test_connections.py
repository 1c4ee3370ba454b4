"""Connection deadlines and the connection cap on a real server (:mod:`app.connections`), with
one worker and with two (gunicorn's uvicorn workers, app.supervisor): a request head must
arrive in time however it trickles, a stalled body ends with 408 and stores nothing, a steady
slow upload is not cut, connections beyond a worker's cap get 503 at once, and keep-alive still
closes idle connections."""

import collections
import contextlib
import json
import re
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server, running_server, server_env
from tests.factories import BOUNDARY, make_instance, multipart

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
KEEP_ALIVE = 4
MAX_CONNECTIONS = 4  # per worker
#: how late a deadline may fire on a loaded machine
SLACK = 5.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[int], Server]]:
    """A server per number of workers, started when a test first asks, shared by the module."""
    started: dict[int, Server] = {}
    with contextlib.ExitStack() as stack:

        def server_with(workers: int) -> Server:
            if workers not in started:
                tmp = tmp_path_factory.mktemp(f"conns-{workers}")
                env = server_env(
                    tmp / "data",
                    f"sqlite+aiosqlite:///{tmp / 'index.db'}",
                    LIGHTBOX_SERVER__HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                    LIGHTBOX_SERVER__BODY_TIMEOUT=str(BODY_TIMEOUT),
                    LIGHTBOX_SERVER__KEEP_ALIVE_TIMEOUT=str(KEEP_ALIVE),
                    LIGHTBOX_SERVER__MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                )
                started[workers] = stack.enter_context(
                    running_server(env, args=["--workers", str(workers)])
                )
                _settle(started[workers])
            return started[workers]

        yield server_with
        for server in started.values():
            assert "Traceback" not in server.log.read_text()


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def server(request: pytest.FixtureRequest, servers: Callable[[int], Server]) -> Server:
    """The head deadline and the cap are the protocol's: shown with one process and under
    gunicorn."""
    return servers(request.param)


@pytest.fixture
def single(servers: Callable[[int], Server]) -> Server:
    """Keep-alive and the body deadline are the same in any worker: one server shows them."""
    return servers(1)


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> int:
    """The worker processes of this test's server."""
    return int(request.node.callspec.params["server"])


def _settle(server: Server) -> None:
    """Wait until the server answers and the connections of earlier tests are gone."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.dicomweb}/studies", timeout=5).status_code == 204:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server does not answer"
        time.sleep(0.2)
    time.sleep(0.5)


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=HEADER_TIMEOUT + SLACK)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send a request and read its response head (our test requests get no body back)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


GET_STUDIES = b"GET /dicom-web/studies HTTP/1.1\r\nHost: t\r\n\r\n"


def _trickle(sock: socket.socket, head: bytes, every: float = 0.1) -> tuple[bytes, float]:
    """Send ``head``, then a header line a byte at a time until the server answers; what it
    sent before closing, and how long after the first byte it answered."""
    started = time.monotonic()
    sock.sendall(head)
    for _ in range(int((HEADER_TIMEOUT + SLACK) * 3 / every)):
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            break
        sock.sendall(b"x")
    answered = time.monotonic() - started
    return _until_closed(sock), answered


def test_half_request_line_gets_408_at_the_deadline(server: Server) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /dicom-web/stu")
        data = _until_closed(sock)
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data
    problem = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert problem["status"] == 408
    assert "request head" in problem["detail"]
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + SLACK


def test_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert _until_closed(sock) == b""  # closed silently, like an idle keep-alive one
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + SLACK


def test_trickled_head_is_closed_at_the_deadline_not_reset_per_byte(server: Server) -> None:
    with _connect(server) as sock:
        data, elapsed = _trickle(sock, b"GET /dicom-web/studies HTTP/1.1\r\nX-Slow: ")
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + SLACK


def test_trickled_head_of_a_later_request_is_closed_too(single: Server) -> None:
    """After a response, the next head's deadline starts with its first byte."""
    with _connect(single) as sock:
        assert _exchange(sock, GET_STUDIES).startswith(b"HTTP/1.1 204 ")
        time.sleep(HEADER_TIMEOUT * 0.75)  # idle within keep-alive: no deadline yet
        data, elapsed = _trickle(sock, b"GET /dicom-web/studies HTTP/1.1\r\nX-Slow: ")
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + SLACK


def test_keep_alive_still_closes_idle_connections(server: Server) -> None:
    """Also shows that the guard sees the request start (with either process manager): else
    the head deadline, running since the connection opened, would close it first."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=KEEP_ALIVE + SLACK) as sock:
        assert _exchange(sock, GET_STUDIES).startswith(b"HTTP/1.1 204 ")
        answered = time.monotonic()
        assert _until_closed(sock) == b""
        idle = time.monotonic() - answered
    assert KEEP_ALIVE * 0.9 <= idle < KEEP_ALIVE + SLACK


def _worker_of(head: bytes) -> str:
    """Which worker answered: request ids start with a random prefix per process."""
    found = re.search(rb"\r\nx-request-id: ([0-9a-f]+)-", head)
    assert found, head
    return found.group(1).decode()


def test_connections_beyond_the_cap_get_503_at_once(server: Server, workers: int) -> None:
    """Each worker holds at most ``MAX_CONNECTIONS``. The kernel picks a new connection's worker,
    so connections are opened one by one, each answered once and then idle in keep-alive, until
    one is refused: at once, and only by a worker that holds its cap (by the count, at the
    latest the connection after ``MAX_CONNECTIONS * workers``)."""
    _settle(server)  # earlier tests' connections are closed, also in the workers' counts
    held: list[socket.socket] = []
    owners: list[str] = []
    refused = b""
    elapsed = 0.0
    try:
        for _ in range(MAX_CONNECTIONS * workers + 1):
            sock = _connect(server)
            started = time.monotonic()
            head = _exchange(sock, GET_STUDIES)
            if not head.startswith(b"HTTP/1.1 204 "):
                refused = head + _until_closed(sock)
                elapsed = time.monotonic() - started
                sock.close()
                break
            held.append(sock)
            owners.append(_worker_of(head))
        assert refused.startswith(b"HTTP/1.1 503 "), (refused, owners)
        assert b"retry-after: 1" in refused
        assert elapsed < HEADER_TIMEOUT * 0.9  # answered at once, not at a deadline
        counts = collections.Counter(owners)
        assert len(counts) <= workers
        assert max(counts.values()) == MAX_CONNECTIONS, counts  # the refusing worker was full
    finally:
        for sock in held:
            sock.close()
    # they are gone: the server answers again
    with _connect(server) as sock:
        assert _exchange(sock, GET_STUDIES).startswith(b"HTTP/1.1 204 ")


def _stow_head(length: int) -> bytes:
    return (
        "POST /dicom-web/studies HTTP/1.1\r\nHost: t\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}\r\n'
        f"Accept: application/dicom+json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith("index.db")}


def test_stalled_body_gets_408_and_stores_nothing(single: Server) -> None:
    study = "1.2.826.0.1.3680043.8.498.77001"
    body = multipart([make_instance(StudyInstanceUID=study) for _ in range(2)])
    data_dir = Path(single.log).parent / "data"
    before = _files(data_dir)
    with _connect(single) as sock:
        # the first instance whole, the second half-way: then nothing more
        sock.sendall(_stow_head(len(body)) + body[: len(body) * 3 // 4])
        started = time.monotonic()
        data = _until_closed(sock)
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data
    assert "request body stalled" in json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"]
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + SLACK
    found = httpx.get(f"{single.dicomweb}/studies", params={"StudyInstanceUID": study}, timeout=10)
    assert found.status_code == 204  # not even the complete first instance
    assert _files(data_dir) == before  # no blob, no spool file left


def test_steady_slow_upload_is_not_cut(single: Server) -> None:
    """Longer than both deadlines in all, but never stalled as long as the body deadline."""
    study = "1.2.826.0.1.3680043.8.498.77002"
    body = multipart([make_instance(StudyInstanceUID=study)])
    pieces = 6
    step = len(body) // pieces + 1
    with socket.create_connection(("127.0.0.1", single.port), timeout=30) as sock:
        sock.sendall(_stow_head(len(body)))
        for i in range(pieces):
            time.sleep(BODY_TIMEOUT * 0.3)  # 6 pauses: longer than either deadline in all
            sock.sendall(body[i * step : (i + 1) * step])
        assert _exchange(sock, b"").startswith(b"HTTP/1.1 200 ")
    found = httpx.get(f"{single.dicomweb}/studies", params={"StudyInstanceUID": study}, timeout=10)
    assert found.status_code == 200
