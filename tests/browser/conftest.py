"""What the browser tests need: the system Chromium and the OHIF viewer build.

Neither is ever skipped: a machine without them fails the run with what to install (``.ci/run``
installs both; on a developer machine the OHIF build is fetched with npm on first use).
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.browser import ohif_dist

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium (Debian's ``chromium`` package; Playwright downloads no browser)."""
    explicit = os.environ.get("LIGHTBOX_TEST_CHROMIUM")
    candidates = [explicit] if explicit else [*CHROMIUM_CANDIDATES, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "the browser test needs Chromium: apt-get install chromium "
        "(or point LIGHTBOX_TEST_CHROMIUM at a Chromium binary)",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def ohif_viewer() -> Path:
    """The ``dist/`` of the pinned ``@ohif/app`` (fetched with npm into .cache/ohif once)."""
    try:
        return ohif_dist.fetch()
    except ohif_dist.OhifUnavailable as exc:
        pytest.fail(f"the browser test needs the OHIF viewer build: {exc}", pytrace=False)


#: where browser tests leave their screenshots (git-ignored; CI keeps them as artifacts)
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The screenshots' directory (``.artifacts/screenshots`` of the repository)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
