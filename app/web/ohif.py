"""The OHIF v3 viewer at ``/viewer/`` (issue 22, point 3), when ``lightbox viewer install`` has
installed it (:mod:`app.ohif`).

Same origin as the pages and the DICOMweb root, so OHIF's requests carry the user's session
cookie: no token in a URL, no CORS. Every file is behind the page guard (read permission), and:

- ``index.html`` is served rewritten for the ``/viewer/`` prefix (OHIF's build assumes ``/``):
  its absolute paths prefixed, its two inline scripts replaced by ``/viewer/lightbox-init.js``
  (so the viewer's Content-Security-Policy needs no ``'unsafe-inline'`` for scripts), and its
  service worker left out (it would keep responses, which hold patient data, in the browser);
- ``/viewer/app-config.js`` is generated per request: Lightbox's DICOMweb root as the only data
  source, and a small shim that adds the session's CSRF token to the viewer's state-changing
  requests to that root (a measurement or segmentation saved from OHIF is a STOW-RS with the
  session cookie; XMLHttpRequest is what OHIF's DICOMweb client uses). It is never cached and is
  ``Cross-Origin-Resource-Policy: same-origin`` (another site cannot include it; the session
  cookie, ``SameSite=Lax``, would not be sent to it either);
- paths of the single-page app (``/viewer/viewer?StudyInstanceUIDs=...``) get ``index.html``.

The viewer's CSP (its own, which :mod:`.headers` keeps): scripts from us only, plus
``'wasm-unsafe-eval'`` (cornerstone's image decoders are WebAssembly); styles may be inline
(React sets style attributes); workers from ``blob:``; no framing, no plugins.
"""

import functools
import json
import mimetypes
import re
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from app import ohif
from app.api.deps import SettingsDep
from app.api.security import page
from app.api.urls import service_base
from app.auth.principal import Permission
from app.config import Settings
from app.errors import NotFound
from app.web.templating import page_context

__all__ = ["PREFIX", "VIEWER_CSP", "app_config", "ohif_installed", "router"]

router = APIRouter(include_in_schema=False)

PREFIX: Final = "/viewer"
VIEWER_CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_INIT_SCRIPT: Final = (
    "/* written by Lightbox: OHIF's inline start-up scripts, served from a file (CSP) */\n"
    'console.time("scriptToView");\n'
    f'window.PUBLIC_URL = "{PREFIX}/";\n'
    "function browserImportFunction(n) { return import(n); }\n"
    "window.browserImportFunction = browserImportFunction;\n"
)
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/manifest+json", ".webmanifest")


def ohif_installed(settings: Settings) -> bool:
    """Whether an OHIF build is installed (the study page then offers it)."""
    return ohif.installed(settings.data_dir) is not None


@functools.lru_cache(maxsize=4)
def _index(path: Path, mtime_ns: int) -> bytes:
    """OHIF's index.html for the ``/viewer/`` prefix (module docstring)."""
    del mtime_ns  # the cache key: a reinstalled build is read again
    html = path.read_text(encoding="utf-8")
    html = re.sub(r"<script>[^<]*</script>", "", html)  # the inline start-up scripts
    html = re.sub(r"<script[^>]*init-service-worker\.js[^>]*></script>", "", html)
    html = re.sub(r'((?:src|href)=")/(?!/)', rf"\1{PREFIX}/", html)
    init = f'<script src="{PREFIX}/lightbox-init.js"></script>'
    return html.replace("<head>", f"<head>{init}", 1).encode("utf-8")


def app_config(dicomweb: str, csrf_token: str) -> str:
    """OHIF's ``app-config.js``: Lightbox's DICOMweb root as its one data source, and the shim
    that sends the session's CSRF token with the viewer's writes to it."""
    config = {
        "name": "lightbox",
        "routerBasename": PREFIX,
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumberOfWebWorkers": 3,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "defaultDataSourceName": "lightbox",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "lightbox",
                "configuration": {
                    "friendlyName": "Lightbox",
                    "name": "lightbox",
                    "wadoUriRoot": dicomweb,
                    "qidoRoot": dicomweb,
                    "wadoRoot": dicomweb,
                    "qidoSupportsIncludeField": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": True,
                    "supportsWildcard": True,
                    "supportsStow": True,
                    "supportsReject": False,
                    "omitQuotationForMultipartRequest": True,
                    "bulkDataURI": {"enabled": True},
                },
            }
        ],
    }
    shim = (
        "(function () {\n"
        "  // Lightbox: the session's CSRF token on the viewer's writes to the DICOMweb root\n"
        f"  var token = {json.dumps(csrf_token)};\n"
        f"  var root = new URL({json.dumps(dicomweb)}, location.href);\n"
        "  var safe = {GET: 1, HEAD: 1, OPTIONS: 1};\n"
        "  function ours(url) {\n"
        "    try {\n"
        "      var u = new URL(url, location.href);\n"
        "      return u.origin === location.origin && u.pathname.indexOf(root.pathname) === 0;\n"
        "    } catch (e) { return false; }\n"
        "  }\n"
        "  var open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;\n"
        "  XMLHttpRequest.prototype.open = function (method, url) {\n"
        "    this.__lightbox = !safe[String(method).toUpperCase()] && ours(url);\n"
        "    return open.apply(this, arguments);\n"
        "  };\n"
        "  XMLHttpRequest.prototype.send = function () {\n"
        "    if (this.__lightbox && token) this.setRequestHeader('X-CSRF-Token', token);\n"
        "    return send.apply(this, arguments);\n"
        "  };\n"
        "  var fetch0 = window.fetch;\n"
        "  window.fetch = function (input, init) {\n"
        "    var method = (init && init.method) || (input && input.method) || 'GET';\n"
        "    var url = typeof input === 'string' ? input : (input && input.url) || String(input);\n"
        "    if (token && !safe[String(method).toUpperCase()] && ours(url)) {\n"
        "      init = Object.assign({}, init);\n"
        "      var headers = new Headers(init.headers || (input && input.headers) || {});\n"
        "      headers.set('X-CSRF-Token', token);\n"
        "      init.headers = headers;\n"
        "    }\n"
        "    return fetch0.call(this, input, init);\n"
        "  };\n"
        "})();\n"
    )
    return f"window.config = {json.dumps(config, indent=1)};\n{shim}"


def _build(settings: Settings) -> ohif.Installed:
    found = ohif.installed(settings.data_dir)
    if found is None:
        raise NotFound("the OHIF viewer is not installed on this server (lightbox viewer install)")
    return found


@router.get(PREFIX, openapi_extra=page(Permission.READ))
async def viewer_root(settings: SettingsDep) -> Response:
    _build(settings)
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(PREFIX + "/{path:path}", openapi_extra=page(Permission.READ))
async def viewer_file(request: Request, path: str, settings: SettingsDep) -> Response:
    """A file of the OHIF build, the generated start-up files, or the app's ``index.html``."""
    build = _build(settings)
    if path == "app-config.js":
        session = page_context(request).csrf_token
        body = app_config(service_base(request, settings), session)
        return Response(
            body,
            media_type="text/javascript",
            headers={
                "Cache-Control": "no-store",
                "Cross-Origin-Resource-Policy": "same-origin",
            },
        )
    if path == "lightbox-init.js":
        return Response(
            _INIT_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
        )
    dist = build.dist.resolve()
    if path and path != "index.html" and path not in ("init-service-worker.js", "sw.js"):
        candidate = (dist / path).resolve()
        if candidate.is_relative_to(dist) and candidate.is_file():
            return FileResponse(candidate, headers={"Cache-Control": "private, max-age=3600"})
        if "." in path.rsplit("/", 1)[-1]:  # a file, not an app route: not there
            raise NotFound(f"no file {path[:200]!r} in the OHIF viewer")
    index = dist / "index.html"
    return Response(
        _index(index, index.stat().st_mtime_ns),
        media_type="text/html",
        headers={
            "Content-Security-Policy": VIEWER_CSP,
            "Cache-Control": "no-store",
        },
    )
