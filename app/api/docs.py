"""The API's own documentation: ``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at
``/redoc``, with their scripts served from here (``/docs/assets/...``), never from a CDN, so they
work in a hospital network without Internet access.

The assets are those the ``fastapi-offline`` package ships (Swagger UI and ReDoc bundles). The
pages and the assets hold no data and are open; the OpenAPI document is open with
``auth.public_api_docs``, otherwise it needs the admin permission. A browser cannot send a
bearer token with a page it navigates to, so the pages take it from the URL's fragment
(``/docs#token=<admin token>``, never sent to the server nor logged), keep it in the tab's
``sessionStorage`` and send it with the document's request and with Swagger UI's "Try it out".
"""

import html
import json
from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from app.api.security import ANONYMOUS_ROUTE, requires
from app.auth.principal import Permission
from app.errors import NotFound

__all__ = ["ASSETS", "docs_router"]

_STATIC: Final = Path(fastapi_offline.__file__).parent / "static"
#: the files served under /docs/assets/ and their media types (nothing else is)
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_OPEN: Final = requires(ANONYMOUS_ROUTE)

# The token: from the fragment (then removed from the address bar), else from this tab's
# storage; sent as a bearer token with every request the page makes.
_TOKEN_JS: Final = """
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) {
  sessionStorage.setItem("lightbox-token", params.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("lightbox-token");
const withToken = (headers) => token ? {...headers, Authorization: "Bearer " + token} : headers;
const explain = (status) => {
  document.getElementById("hint").textContent = status === 401 || status === 403
    ? "The API description needs an admin token: open " + location.pathname
      + "#token=<token>, with a token from `lightbox token create --scope admin`."
    : "The API description could not be loaded (HTTP " + status + ").";
};
"""


def _page(title: str, root: str, body: str, script: str) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{root}/docs/assets/favicon.png">
{body}
<p id="hint" style="font-family: sans-serif; color: #a00"></p>
<script>{_TOKEN_JS}{script}</script>
</html>
""",
        headers={"Cache-Control": "no-store"},
    )


def docs_router(app: FastAPI, *, public: bool) -> APIRouter:
    """The documentation routes of ``app``; its OpenAPI document open when ``public``."""
    router = APIRouter(include_in_schema=False)

    @router.get(
        "/openapi.json",
        openapi_extra=requires(ANONYMOUS_ROUTE if public else Permission.ADMIN),
    )
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs", openapi_extra=_OPEN)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        spec = json.dumps(f"{root}/openapi.json")
        redirect = json.dumps(f"{root}/docs/oauth2-redirect")
        return _page(
            f"{app.title} - Swagger UI",
            root,
            f'<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">\n</head>\n<body>\n'
            f'<div id="swagger-ui"></div>\n'
            f'<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>',
            f"""
fetch({spec}, {{headers: withToken({{Accept: "application/json"}})}}).then((answer) => {{
  if (!answer.ok) {{ explain(answer.status); return; }}
  return answer.json().then((spec) => {{
    window.ui = SwaggerUIBundle({{
      spec: spec,
      dom_id: "#swagger-ui",
      oauth2RedirectUrl: location.origin + {redirect},
      deepLinking: true,
      persistAuthorization: false,
      requestInterceptor: (request) => {{
        if (token && !request.headers.Authorization) {{
          request.headers.Authorization = "Bearer " + token;
        }}
        return request;
      }},
    }});
  }});
}});
""",
        )

    @router.get("/docs/oauth2-redirect", openapi_extra=_OPEN)
    async def swagger_ui_redirect() -> HTMLResponse:
        from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html

        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc", openapi_extra=_OPEN)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        spec = json.dumps(f"{root}/openapi.json")
        return _page(
            f"{app.title} - ReDoc",
            root,
            f'</head>\n<body>\n<div id="redoc"></div>\n'
            f'<script src="{root}/docs/assets/redoc.standalone.js"></script>',
            f"""
fetch({spec}, {{headers: withToken({{Accept: "application/json"}})}}).then((answer) => {{
  if (!answer.ok) {{ explain(answer.status); return; }}
  return answer.json().then((spec) => Redoc.init(spec, {{}}, document.getElementById("redoc")));
}});
""",
        )

    @router.get("/docs/assets/{name}", openapi_extra=_OPEN)
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no documentation asset {name!r}")
        return FileResponse(
            _STATIC / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router
