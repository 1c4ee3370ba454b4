"""HEAD as the GET without its body (app.api.head): streamed bodies are not produced, the outer
scope still says HEAD, and the audit records a HEAD as ``head`` (every route's HEAD is checked
against its GET in tests/auth/test_every_route.py)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydicom.uid import generate_uid
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.head import HeadMiddleware
from app.services.audit import AuditFilter
from tests.auth.helpers import auth_client, auth_settings
from tests.factories import make_dataset, multipart, stow_headers, to_bytes

ROOT = "/dicom-web"


def _app(produced: list[int], seen: list[dict[str, Any]]) -> Any:
    """A FastAPI app with a streamed and a plain GET route, HeadMiddleware, and an outer layer
    (where the audit middleware sits) that keeps what it sees of the scope after the request."""
    app = FastAPI()

    @app.get("/stream/{name}")
    async def stream(name: str) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(100):
                produced.append(n)
                yield b"x" * 1000

        return StreamingResponse(
            chunks(), media_type="application/octet-stream", headers={"X-Name": name}
        )

    @app.get("/plain")
    async def plain() -> Response:
        return Response(b"hello", media_type="text/plain", headers={"ETag": '"h"'})

    app.add_middleware(HeadMiddleware)

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        seen.append(
            {
                "method": scope["method"],
                "route": getattr(scope.get("route"), "path", None),
                "path_params": scope.get("path_params"),
            }
        )

    return outer


async def test_a_streamed_body_is_not_produced_for_head() -> None:
    produced: list[int] = []
    seen: list[dict[str, Any]] = []
    transport = httpx.ASGITransport(app=_app(produced, seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        head = await http.head("/stream/a")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == "application/octet-stream"
        assert head.headers["x-name"] == "a"
        assert len(produced) <= 1  # the producer stopped at its first chunk
        assert seen[-1] == {
            "method": "HEAD",
            "route": "/stream/{name}",
            "path_params": {"name": "a"},
        }
        get = await http.get("/stream/a")
        assert len(get.content) == 100_000
        plain = await http.head("/plain")
        assert (plain.status_code, plain.content) == (200, b"")
        assert (plain.headers["content-length"], plain.headers["etag"]) == ("5", '"h"')
        assert (await http.head("/nothing")).status_code == 404
        assert seen[-1]["method"] == "HEAD"


async def test_head_is_audited_as_head_not_as_a_read(database_url: str, tmp_path: Path) -> None:
    """A HEAD sends no data, so it is no "Instances Accessed" read: its action is ``head``; a
    HEAD on a search tells the number of matches, so it keeps what was looked for."""
    settings = auth_settings(database_url, tmp_path / "data")
    ds = make_dataset(PatientID="PID-HEAD-1")
    study = str(ds.StudyInstanceUID)
    async with auth_client(settings) as (services, http, tokens):
        actor = f"cache-{generate_uid()[-12:]}"  # the audit trail outlives each test's data
        reader = tokens.headers(["read"], subject=actor)
        stored = await http.post(
            f"{ROOT}/studies",
            content=multipart([to_bytes(ds)]),
            headers={**stow_headers(), **tokens.headers(["write"])},
        )
        assert stored.status_code == 200, stored.text
        metadata = await http.head(f"{ROOT}/studies/{study}/metadata", headers=reader)
        search = await http.head(f"{ROOT}/studies?PatientID=PID-HEAD-1", headers=reader)
        anonymous = await http.head(f"{ROOT}/studies/{study}/metadata")
        assert (metadata.status_code, search.status_code, anonymous.status_code) == (200, 200, 401)
        assert search.headers["x-total-count"] == "1"
        await services.audit.flush()
        items, _ = await services.audit.search(AuditFilter(), limit=100, offset=0)
        rows = {i["request_id"]: i for i in items}
        first = rows[metadata.headers["x-request-id"]]
        assert (first["action"], first["actor"], first["study_uid"]) == ("head", actor, study)
        assert first["detail"].startswith("HEAD ")
        assert first["detail"].endswith("/studies/{study}/metadata")
        looked = rows[search.headers["x-request-id"]]
        assert (looked["action"], looked["patient_id"], looked["count"]) == (
            "head",
            "PID-HEAD-1",
            1,
        )
        assert looked["detail"].endswith("?PatientID=PID-HEAD-1")
        assert rows[anonymous.headers["x-request-id"]]["action"] == "login-failure"
        mine, _ = await services.audit.search(AuditFilter(actor=actor), limit=100, offset=0)
        assert [i["action"] for i in mine] == ["head", "head"]  # no read among them
