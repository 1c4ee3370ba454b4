"""The OHIF v3 viewer build (npm ``@ohif/app``): fetched from the npm registry, integrity-checked,
installed under the data directory, and found again (issue 22, point 3).

``lightbox viewer install [--version]`` (:mod:`app.cli.viewer`) calls :func:`install`; the pages
serve what :func:`installed` finds at ``/viewer/`` (:mod:`app.web.ohif`); the browser tests fetch
the same pinned build into the repository's cache with :func:`fetch`
(``tests/browser/ohif_dist.py``).

How a build is fetched: ``npm pack @ohif/app@<version>`` downloads the tarball (npm checks it
against the registry's ``dist.integrity``), then the tarball's SHA-512 is compared with the
integrity pinned here for that version (:data:`PINNED`), or, for another version, with the one
given (``--integrity``) or else the registry's (``npm view``: the registry is then trusted, and
the command says so). Only ``package/dist/`` is unpacked (``tarfile``'s ``data`` filter: no
links out, no device files), into a temporary directory renamed into place, so an installation
is complete or absent. OHIF's build expects to be served at ``/``: an installed one is made
to load its files from ``/viewer/`` (:func:`serve_under`; its index page is rewritten as it is
served, :mod:`app.web.ohif`).

Standard library only: ``.ci/run`` runs ``python3 -m tests.browser.ohif_dist`` with the system
Python before the virtualenv exists.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "PACKAGE",
    "PINNED",
    "VERSION",
    "Installed",
    "OhifUnavailable",
    "fetch",
    "install",
    "installed",
    "serve_under",
    "viewer_root",
]

PACKAGE: Final = "@ohif/app"
#: the version ``lightbox viewer install`` and the browser tests use unless told otherwise
VERSION: Final = "3.13.2"
#: the registry's ``dist.integrity`` of each pinned version (this pins the content)
PINNED: Final = {
    "3.13.2": (
        "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4f"
        "jEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
    ),
}
NPM_TIMEOUT: Final = 900
#: the file naming the installed version, under :func:`viewer_root`
CURRENT: Final = "current.json"


class OhifUnavailable(RuntimeError):
    """The viewer build could not be had (no npm, no registry, a wrong download)."""


@dataclass(frozen=True, slots=True)
class Installed:
    """An installed build: its version, integrity and ``dist`` directory."""

    version: str
    integrity: str
    dist: Path


def viewer_root(data_dir: Path) -> Path:
    """Where the builds are installed: ``<data_dir>/viewer/ohif``."""
    return data_dir / "viewer" / "ohif"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise OhifUnavailable(
            f"npm is needed to fetch {PACKAGE} (the OHIF viewer) from the npm registry: "
            "apt-get install npm"
        )
    return npm


def _run(args: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise OhifUnavailable(f"{what} timed out") from exc
    if done.returncode != 0:
        raise OhifUnavailable(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def expected_integrity(version: str, integrity: str | None = None) -> tuple[str, bool]:
    """The integrity a version's tarball must have, and whether it is pinned (here, or given)
    rather than the registry's word."""
    pinned = integrity or PINNED.get(version)
    if pinned is not None:
        return pinned, True
    done = _run([_npm(), "view", f"{PACKAGE}@{version}", "dist.integrity"], "npm view")
    registry = done.stdout.strip()
    if not registry.startswith("sha512-"):
        raise OhifUnavailable(f"the registry has no integrity for {PACKAGE}@{version}")
    return registry, False


def _unpack(version: str, integrity: str, work: Path) -> Path:
    """``package/dist`` of the checked tarball, unpacked under ``work``."""
    what = f"npm pack {PACKAGE}@{version}"
    _run([_npm(), "pack", f"{PACKAGE}@{version}", "--pack-destination", str(work)], what)
    tarballs = sorted(work.glob("*.tgz"))
    if len(tarballs) != 1:
        raise OhifUnavailable(f"{what} left {len(tarballs)} tarballs")
    got = _integrity(tarballs[0])
    if got != integrity:
        raise OhifUnavailable(
            f"{PACKAGE}@{version} does not match its integrity: {got} != {integrity}"
        )
    with tarfile.open(tarballs[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
        tar.extractall(work, members=members, filter="data")
    tarballs[0].unlink()
    unpacked = work / "package" / "dist"
    if not (unpacked / "index.html").is_file():
        raise OhifUnavailable(f"{PACKAGE}@{version} has no dist/index.html")
    return unpacked


def _place(unpacked: Path, dist: Path) -> None:
    dist.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(unpacked, dist)  # atomic: a build is complete or absent
    except OSError:
        if not (dist / "index.html").is_file():  # not a concurrent fetch that won
            raise


def fetch(cache: Path, version: str = VERSION, integrity: str | None = None) -> Path:
    """The unpacked ``dist/`` of ``version`` under ``cache/<version>``, fetched when absent."""
    dist = cache / version / "dist"
    if (dist / "index.html").is_file():
        return dist
    expected, _ = expected_integrity(version, integrity)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        _place(_unpack(version, expected, Path(tmp)), dist)
    return dist


#: what OHIF's webpack bundles say their files' URL prefix is (a build for ``/``)
_PUBLIC_PATH: Final = b'__webpack_require__.p = "/";'


def serve_under(dist: Path, prefix: str) -> int:
    """Make a build load its own files from ``prefix`` (``/viewer/``): webpack's public path is
    a constant of each bundle (the app and its workers), and the stylesheets name their fonts
    from ``/``, so both are rewritten in place, once; the number of files rewritten. The
    archive's integrity was checked before."""
    rewrites = (
        ("*.js", _PUBLIC_PATH, f'__webpack_require__.p = "{prefix}";'.encode()),
        ("*.css", b"url(/", f"url({prefix}".encode()),
    )
    count = 0
    for pattern, old, new in rewrites:
        for file in sorted(dist.glob(pattern)):
            data = file.read_bytes()
            if old not in data or new in data:  # done already (a second install)
                continue
            tmp = file.with_name(file.name + ".tmp")
            tmp.write_bytes(data.replace(old, new))
            os.replace(tmp, file)
            count += 1
    return count


def install(
    data_dir: Path,
    version: str = VERSION,
    integrity: str | None = None,
    *,
    prefix: str = "/viewer/",
) -> tuple[Installed, bool]:
    """Fetch ``version`` into the data directory, ready to be served under ``prefix``, and make
    it the one served; whether its integrity was pinned (or given) rather than the registry's."""
    root = viewer_root(data_dir)
    expected, pinned = expected_integrity(version, integrity)
    dist = fetch(root, version, expected)
    serve_under(dist, prefix)
    done = Installed(version, expected, dist)
    current = root / CURRENT
    tmp = current.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version, "integrity": expected}))
    os.replace(tmp, current)
    return done, pinned


def installed(data_dir: Path) -> Installed | None:
    """The build ``lightbox viewer install`` installed last, if any (and still complete)."""
    root = viewer_root(data_dir)
    try:
        recorded = json.loads((root / CURRENT).read_text())
        version, integrity = str(recorded["version"]), str(recorded["integrity"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not version or "/" in version or version.startswith("."):
        return None
    dist = root / version / "dist"
    if not (dist / "index.html").is_file():
        return None
    return Installed(version, integrity, dist)
