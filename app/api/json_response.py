"""JSON responses of the admin API (``/api/aes``, ``/api/jobs``, ``/api/tokens``,
``/api/audit``): a body serialised with orjson."""

import orjson
from starlette.responses import Response

JSON = "application/json"


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)
