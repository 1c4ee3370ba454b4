"""Request ids: a client's ``X-Request-ID`` when it is a plain name, else one of ours; the
middleware sends it back and the audit row keeps it."""

import itertools
import os
import re
import secrets
from typing import Final

from starlette.types import Scope

__all__ = ["RequestIds", "request_id"]

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    """Request ids of this process: a random 64-bit prefix and a counter, unique across processes
    and restarts without asking the kernel for randomness per request (``uuid4`` did: a
    ``getrandom`` call per request). Correlation ids, not secrets: nothing is granted by one.
    A forked child (same prefix, same counter) is detected by its pid and takes a new prefix.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), secrets.token_hex(8)
            self._counter = itertools.count(1)
        return f"{self._prefix}-{next(self._counter):x}"


_new_request_id = RequestIds().next


def request_id(scope: Scope) -> str:
    """The request's id: its ``X-Request-ID`` header when that is a plain name (bounded), else a
    new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return _new_request_id()
