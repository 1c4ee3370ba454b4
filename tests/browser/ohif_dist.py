"""The OHIF v3 viewer build (npm ``@ohif/app``, pinned) that the browser test serves.

Fetched with ``npm pack`` from the npm registry on first use, checked against the pinned
integrity hash, and unpacked into ``.cache/ohif/<version>/dist`` of the repository (git-ignored),
so later runs do not fetch it again. Standard library only: ``.ci/run`` calls it with the system
Python before the virtualenv exists::

    python3 -m tests.browser.ohif_dist
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
# the registry's ``dist.integrity`` of that version (npm checks it too; this pins the content)
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4f"
    "jEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ohif"
NPM_TIMEOUT = 900


class OhifUnavailable(RuntimeError):
    """The viewer build could not be had (no npm, no registry, a wrong download)."""


def dist_dir(cache: Path = CACHE) -> Path:
    return cache / VERSION / "dist"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch(cache: Path = CACHE) -> Path:
    """The unpacked ``dist/`` directory, fetched with npm when it is not cached yet."""
    dist = dist_dir(cache)
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise OhifUnavailable(
            f"npm is needed to fetch {PACKAGE}@{VERSION} (the OHIF viewer of the browser test): "
            "apt-get install npm"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        work = Path(tmp)
        try:
            done = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(work)],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise OhifUnavailable(f"npm pack {PACKAGE}@{VERSION} timed out") from exc
        tarballs = sorted(work.glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise OhifUnavailable(
                f"npm pack {PACKAGE}@{VERSION} failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        got = _integrity(tarballs[0])
        if got != INTEGRITY:
            raise OhifUnavailable(
                f"{PACKAGE}@{VERSION} does not match its pinned integrity: {got} != {INTEGRITY}"
            )
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
            tar.extractall(work, members=members, filter="data")
        unpacked = work / "package" / "dist"
        if not (unpacked / "index.html").is_file():
            raise OhifUnavailable(f"{PACKAGE}@{VERSION} has no dist/index.html")
        dist.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(unpacked, dist)  # atomic: a cache entry is complete or absent
        except OSError:
            if not (dist / "index.html").is_file():  # not a concurrent fetch that won
                raise
    return dist


if __name__ == "__main__":
    try:
        print(fetch())  # noqa: T201 (a command-line tool)
    except OhifUnavailable as exc:
        sys.exit(f"error: {exc}")
