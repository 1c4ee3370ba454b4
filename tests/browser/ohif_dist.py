"""The OHIF v3 viewer build (npm ``@ohif/app``, pinned) that the browser tests serve.

Fetched by :func:`app.ohif.fetch` (the code of ``lightbox viewer install``) into
``.cache/ohif/<version>/dist`` of the repository (git-ignored) on first use, so later runs do not
fetch it again. Standard library only: ``.ci/run`` calls it with the system Python before the
virtualenv exists::

    python3 -m tests.browser.ohif_dist
"""

import sys
from pathlib import Path

from app import ohif
from app.ohif import OhifUnavailable

__all__ = ["CACHE", "OhifUnavailable", "fetch"]

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ohif"


def fetch(cache: Path = CACHE) -> Path:
    """The unpacked ``dist/`` of the pinned version, fetched with npm when not cached yet."""
    return ohif.fetch(cache, ohif.VERSION)


if __name__ == "__main__":
    try:
        print(fetch())  # noqa: T201 (a command-line tool)
    except OhifUnavailable as exc:
        sys.exit(f"error: {exc}")
