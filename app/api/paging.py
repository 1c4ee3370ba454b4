"""Paging of the admin API's lists (``/api/audit``, ``/api/jobs``, ``/api/tokens``): the
``limit`` and ``offset`` parameters, and one page of a list with its total."""

from collections.abc import Sequence
from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from app.api.json_response import json_response

#: the longest page a client may ask for
MAX_LIMIT = 1000
LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
OffsetParam = Annotated[int, Query(ge=0)]


def page_response(items: Sequence[object], *, total: int, offset: int, limit: int) -> Response:
    """One page of a list, newest first: the items, where the page starts and how long it may be,
    and the total (also in ``X-Total-Count``, for clients that page by the header)."""
    body = {"total": total, "offset": offset, "limit": limit, "items": items}
    return json_response(body, headers={"X-Total-Count": str(total)})
