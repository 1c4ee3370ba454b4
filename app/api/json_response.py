"""JSON responses of the admin API (``/api/aes``, ``/api/jobs``, ``/api/tokens``,
``/api/audit``): a body serialised with orjson, and one page of a list with its total."""

from collections.abc import Sequence

import orjson
from starlette.responses import Response

JSON = "application/json"


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def page_response(items: Sequence[object], *, total: int, offset: int, limit: int) -> Response:
    """One page of a list, newest first: the items, where the page starts and how long it may be,
    and the total (also in ``X-Total-Count``, for clients that page by the header)."""
    body = {"total": total, "offset": offset, "limit": limit, "items": items}
    return json_response(body, headers={"X-Total-Count": str(total)})
