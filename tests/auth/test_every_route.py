"""Every route of the app answers 401 without a token and 403 without the permission (GEN-06).

The routes are enumerated from the app itself, so a route added later by any router is covered
the day it is added: it cannot ship unprotected. Web pages (issue 22) send a browser without a
session to the sign-in page instead of answering 401 (the pages of a share link say the link
cannot be opened); the static files of the pages are the one mount, open to anyone.
"""

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydicom.uid import generate_uid
from starlette.routing import BaseRoute, Mount

from app.api.docs import ASSETS
from app.api.security import ANONYMOUS_ROUTE, AUTHENTICATED_ROUTE, is_page, is_shared
from app.api.security.access import declared
from app.main import create_app
from tests.auth.helpers import ALL, auth_client, auth_settings
from tests.factories import make_dataset, make_instance, multipart, stow_headers, to_bytes

#: the only routes open to anyone besides the documentation viewers: the health checks
ANONYMOUS = {"/healthz", "/readyz"}
#: the API's documentation (app.api.docs): the viewers and their assets are open (no data);
#: the OpenAPI document needs admin unless ``auth.public_api_docs`` opens it
DOCUMENTATION = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/docs/assets/swagger-ui.css",
}
OPENAPI = "/openapi.json"
#: the pages' static files (CSS, scripts): no data, open to anyone (the sign-in page needs them)
STATIC = {"/static"}

UID = "1.2.826.0.1.3680043.8.498.1"
#: GET routes whose answer changes from one request to the next: the audit trail (each request
#: adds rows), a verification of it, the health checks' timings, the usage figures' time
VARYING = {
    "/api/audit",
    "/admin",
    "/admin/health",
    "/admin/audit",
    "/admin/audit/verify",
    "/admin/usage",
    "/metrics",
}
#: GET routes whose resource the HEAD test's archive does not hold (404 there): the OHIF
#: viewer's files (not installed) and a structured report's text (the instance is an image)
ABSENT_HERE = {
    "/viewer",
    "/viewer/{path:path}",
    "/studies/{study}/reports/{series}/{instance}",
}
_SAMPLES = {"frames": "1", "path": "00280010", "frame": "1", "name": "swagger-ui.css"}
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def expected_permission(path: str, method: str) -> str:
    if path.startswith("/api/") or path == "/metrics":
        return "admin"
    return {"GET": "read", "HEAD": "read", "OPTIONS": "read", "POST": "write"}.get(
        method, "delete" if method == "DELETE" else "admin"
    )


def _contexts(app: FastAPI) -> Iterator[tuple[BaseRoute, str, set[str]]]:
    """(route, full path template, methods) of every route, routers included at any depth."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.165
    for context in list(iterate(app.routes)) if iterate is not None else app.routes:
        route = getattr(context, "original_route", context)
        path = str(getattr(context, "path", getattr(route, "path", "")))
        yield route, path, set(getattr(context, "methods", None) or {"GET"})


def route_templates(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(path template, method) for every route and method of the app."""
    for _route, path, methods in _contexts(app):
        for method in sorted(methods):
            yield path, method


def routes(app: FastAPI) -> Iterator[tuple[BaseRoute, str, str]]:
    """(route, concrete path, method) for every route and method of the app."""
    for route, path, methods in _contexts(app):
        concrete = _PARAM.sub(lambda m: _SAMPLES.get(m.group(1), UID), path)
        for method in sorted(methods):
            yield route, concrete, method


def test_routes_are_enumerated(tmp_path: Path) -> None:
    app = create_app(auth_settings("sqlite+aiosqlite:///:memory:", tmp_path))
    found = {(path, method) for _, path, method in routes(app)}
    assert ("/dicom-web/studies", "GET") in found
    assert ("/dicom-web/studies", "POST") in found
    assert ("/api/audit", "GET") in found
    assert len(found) >= 14


@pytest.mark.parametrize("public_api_docs", [False, True])
async def test_every_route_refuses_without_token_and_without_permission(
    database_url: str, tmp_path: Path, public_api_docs: bool
) -> None:
    settings = auth_settings(database_url, tmp_path / "data", public_api_docs=public_api_docs)
    async with auth_client(settings) as (_services, http, tokens):
        app = http._transport.app  # type: ignore[attr-defined]
        checked = 0
        for route, path, method in routes(app):
            if path in DOCUMENTATION:
                assert isinstance(route, APIRoute), path
                anonymous = await http.request(method, path)
                if path == OPENAPI and not public_api_docs:
                    assert anonymous.status_code == 401, (path, anonymous.text)
                    lacking = await http.request(
                        method, path, headers=tokens.headers([s for s in ALL if s != "admin"])
                    )
                    assert lacking.status_code == 403, path
                    admin = await http.request(method, path, headers=tokens.headers(["admin"]))
                    assert admin.status_code == 200, path
                else:
                    assert anonymous.status_code == 200, (path, anonymous.text)
                continue
            if path in ANONYMOUS:
                response = await http.request(method, path)
                assert response.status_code in (200, 503), (method, path)
                continue
            if path in STATIC:
                assert isinstance(route, Mount), path
                continue
            assert isinstance(route, APIRoute), f"{path} is not a guarded FastAPI route"
            if is_page(route):
                await _check_page(http, tokens.headers, route, path, method)
                checked += 1
                continue
            needed = expected_permission(path, method)
            no_token = await http.request(method, path)
            assert no_token.status_code == 401, (method, path, no_token.text)
            assert no_token.headers["www-authenticate"].startswith("Bearer"), (method, path)
            others = [s for s in ALL if s != needed]
            lacking = await http.request(method, path, headers=tokens.headers(others))
            assert lacking.status_code == 403, (method, path, lacking.text)
            assert f'scope="{needed}"' in lacking.headers["www-authenticate"], (method, path)
            checked += 1
        assert checked >= 12


async def _check_page(
    http: httpx.AsyncClient,
    headers: Callable[..., dict[str, str]],
    route: APIRoute,
    path: str,
    method: str,
) -> None:
    """A page: open when declared so; else without credentials the way to the sign-in page, and
    without the permission it declares 403."""
    declaration = declared(route)
    no_session = await http.request(method, path)
    if declaration == ANONYMOUS_ROUTE:
        assert no_session.status_code < 500, (method, path, no_session.text)
        return
    if is_shared(route):
        # a share link's page: its visitor has nothing to sign in to, the page says the link
        # cannot be opened (no share cookie, or one that does not pass)
        assert no_session.status_code == 401, (method, path, no_session.text)
        assert "This link cannot be opened" in no_session.text, (method, path)
        lacking = await http.request(method, path, headers=headers([s for s in ALL if s != "read"]))
        assert lacking.status_code == 403, (method, path, lacking.text)
        return
    assert no_session.status_code == 303, (method, path, no_session.text)
    assert no_session.headers["location"].startswith("/login?next="), (method, path)
    htmx = await http.request(method, path, headers={"HX-Request": "true"})
    assert htmx.status_code == 401, (method, path)
    assert htmx.headers["hx-redirect"].startswith("/login?next="), (method, path)
    if declaration == AUTHENTICATED_ROUTE:
        nothing = await http.request(method, path, headers=headers([]))
        assert nothing.status_code not in (401, 403), (method, path, nothing.text)
        return
    needed = declaration or expected_permission(path, method)
    lacking = await http.request(method, path, headers=headers([s for s in ALL if s != needed]))
    assert lacking.status_code == 403, (method, path, lacking.text)


async def test_api_documentation_offline_and_for_admins(database_url: str, tmp_path: Path) -> None:
    """The viewers and their scripts are served from here (no CDN: they work offline); the
    OpenAPI document needs an admin token unless ``public_api_docs`` opens it (GEN-06)."""
    closed = auth_settings(database_url, tmp_path / "closed")
    async with auth_client(closed) as (_services, http, tokens):
        assert (await http.get(OPENAPI)).status_code == 401
        assert (await http.get(OPENAPI, headers=tokens.headers(["read"]))).status_code == 403
        document = await http.get(OPENAPI, headers=tokens.headers(["admin"]))
        assert document.status_code == 200
        assert "/dicom-web/studies" in document.json()["paths"]
        for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            viewer = await http.get(page)
            assert viewer.status_code == 200
            # every script, style and icon comes from this server
            sources = re.findall(r'(?:src|href)="([^"]+)"', viewer.text)
            assert f"/docs/assets/{script}" in sources
            assert all(s.startswith("/docs/assets/") for s in sources), sources
            assert "http://" not in viewer.text
            assert "https://" not in viewer.text
            assert "#token=" in viewer.text  # how an admin token reaches the document
        for name, media_type in ASSETS.items():
            asset = await http.get(f"/docs/assets/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["content-type"].startswith(media_type.split(";")[0])
            assert len(asset.content) > 1000, name
        bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content
        assert (await http.get("/docs/assets/../../etc/passwd")).status_code == 404
        assert (await http.get("/docs/assets/core.py")).status_code == 404
        # the data still needs a token
        assert (await http.get("/dicom-web/studies")).status_code == 401
    opened = auth_settings(database_url, tmp_path / "open", public_api_docs=True)
    async with auth_client(opened) as (_services, http, _tokens):
        document = await http.get(OPENAPI)
        assert document.status_code == 200
        assert "/dicom-web/studies" in document.json()["paths"]
        assert (await http.get("/dicom-web/studies")).status_code == 401


@pytest.mark.parametrize("deny_as_not_found", [False, True])
async def test_anonymous_read_never_writes_and_404_mode(
    database_url: str, tmp_path: Path, deny_as_not_found: bool
) -> None:
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        anonymous_read=True,
        deny_as_not_found=deny_as_not_found,
    )
    async with auth_client(settings) as (_services, http, tokens):
        app = http._transport.app  # type: ignore[attr-defined]
        for route, path, method in routes(app):
            if path in DOCUMENTATION | ANONYMOUS | STATIC:
                continue
            if is_page(route):  # pages take signed-in users only: no anonymous readers
                if declared(route) != ANONYMOUS_ROUTE:
                    expected = 401 if is_shared(route) else 303  # a share's page, or sign in
                    assert (await http.request(method, path)).status_code == expected, path
                continue
            needed = expected_permission(path, method)
            response = await http.request(method, path)
            if needed == "read":
                assert response.status_code not in (401, 403), (method, path)
            else:
                assert response.status_code == 401, (method, path)
            lacking = await http.request(
                method, path, headers=tokens.headers([s for s in ALL if s != needed])
            )
            assert lacking.status_code == (404 if deny_as_not_found else 403), (method, path)


async def test_patient_annotation_needs_an_authenticated_caller(
    database_url: str, tmp_path: Path
) -> None:
    """REND-06: anonymous readers see images, but never PHI burned into them."""
    settings = auth_settings(database_url, tmp_path / "data", anonymous_read=True)
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    body = multipart(
        [make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop)]
    )
    async with auth_client(settings) as (_services, http, tokens):
        stored = await http.post(
            "/dicom-web/studies",
            content=body,
            headers={**stow_headers(), **tokens.headers(["write"])},
        )
        assert stored.status_code == 200
        url = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered"
        png = {"Accept": "image/png"}
        assert (await http.get(url, headers=png)).status_code == 200
        refused = await http.get(url, params={"annotation": "patient"}, headers=png)
        assert refused.status_code == 403
        assert "PHI" in refused.text
        frame = await http.get(
            url.replace("/rendered", "/frames/1/rendered"),
            params={"annotation": "patient,technique"},
            headers=png,
        )
        assert frame.status_code == 403
        signed_in = await http.get(
            url, params={"annotation": "patient"}, headers={**png, **tokens.headers(["read"])}
        )
        assert signed_in.status_code == 200


#: headers that differ between any two requests: the request id, a multipart body's boundary
_BOUNDARY = re.compile(r"boundary=[^;]+")


def _comparable(response: httpx.Response) -> dict[str, str]:
    # a page's Set-Cookie holds a fresh random value each time (the sign-in form's nonce)
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "set-cookie")}
    if "content-type" in headers:
        headers["content-type"] = _BOUNDARY.sub("boundary=*", headers["content-type"])
    return headers


async def test_head_on_every_get_route_is_the_get_without_body(
    database_url: str, tmp_path: Path
) -> None:
    """RFC 9110 §9.3.2 on every GET route (the same enumeration): HEAD answers with the GET's
    status and headers (Content-Type, Content-Length, ETag, X-Total-Count ...) and no body;
    without a token it is 401, without ``read`` 403, as the GET."""
    settings = auth_settings(database_url, tmp_path / "data")
    ds = make_dataset(rows=8, columns=8, frames=2)
    study, series, sop = (
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    )
    values = {
        **{"study": study, "series": series, "instance": sop, "frames": "1", "path": "7FE00010"},
        "ae_title": "PEER",  # the administration's routes (registered below)
        "job_id": "",  # made below
    }
    wado = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": sop}
    async with auth_client(settings) as (services, http, tokens):
        stored = await http.post(
            "/dicom-web/studies",
            content=multipart([to_bytes(ds)]),
            headers={**stow_headers(), **tokens.headers(["write"])},
        )
        assert stored.status_code == 200, stored.text
        issued = await services.tokens.issue("cli", "someone", ["read"], 600)
        values["jti"] = issued.record.jti
        await services.aes.add("PEER", "10.0.0.1", 104)
        values["job_id"] = (await services.jobs.create("pull", {}, owner=None)).id
        app = http._transport.app  # type: ignore[attr-defined]
        statuses = []
        for route, template, methods in _contexts(app):
            if "GET" not in methods or template in DOCUMENTATION | STATIC or "/docs/" in template:
                continue
            path = _PARAM.sub(lambda m: values[m.group(1)], template)
            params = wado if template.endswith("/wado") else None
            declaration = declared(route)
            needed = (
                declaration
                if declaration in ALL  # a page's own (an upload or administration page)
                else expected_permission(template, "GET")
            )
            allowed = tokens.headers([needed])
            get = await http.get(path, params=params, headers=allowed)
            head = await http.head(path, params=params, headers=allowed)
            assert (head.status_code, head.content) == (get.status_code, b""), path
            if template in VARYING:  # the GET itself changed what is shown: length moved
                assert head.headers["content-type"] == get.headers["content-type"]
            else:
                assert _comparable(head) == _comparable(get), path
            if template not in ABSENT_HERE:
                statuses.append(get.status_code)
            if template in ANONYMOUS or declared(route) == ANONYMOUS_ROUTE:
                continue
            assert isinstance(route, APIRoute), template
            no_token = await http.head(path, params=params)
            if is_page(route):  # a browser without a session goes to the sign-in page
                expected = 401 if is_shared(route) else 303  # (a share's page says it cannot)
                assert (no_token.status_code, no_token.content[:0]) == (expected, b""), path
                continue
            assert (no_token.status_code, no_token.content) == (401, b""), path
            assert no_token.headers["www-authenticate"].startswith("Bearer"), path
            lacking = await http.head(
                path, params=params, headers=tokens.headers([s for s in ALL if s != needed])
            )
            assert lacking.status_code == 403, path
            assert f'scope="{needed}"' in lacking.headers["www-authenticate"], path
        # the enumeration is complete, and every GET found what it asked for
        assert len(statuses) >= 30
        assert set(statuses) == {200}, statuses
