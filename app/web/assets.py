"""The static files of the pages (``app/web/static``: our CSS and scripts, vendored htmx).

Open to anyone (the sign-in page needs them; they hold no data). The pages link them with a
fingerprint of their content (:func:`~app.web.templating.static_url`), so a fingerprinted URL is
cached for good (``immutable``); any other is revalidated (ETag, Last-Modified).
"""

import os

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from app.web.templating import STATIC_DIR

__all__ = ["StaticAssets", "static_files"]


class StaticAssets(StaticFiles):
    """Starlette's static files, with the caching above."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if scope.get("query_string", b"").startswith(b"v="):
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["cache-control"] = "no-cache"
        return response


def static_files() -> StaticAssets:
    return StaticAssets(directory=STATIC_DIR, follow_symlink=False)
