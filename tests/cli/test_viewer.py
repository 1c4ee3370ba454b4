"""``lightbox viewer``: ``status`` says what is installed (exit 1 when nothing is); ``install``
refuses a download that does not match its integrity. (A real install of the pinned build runs
in tests/browser/test_ohif.py.)"""

import os
import subprocess
import sys
from pathlib import Path

from tests.web.test_ohif import install_stand_in


def _lightbox(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(LIGHTBOX_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "app", "viewer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_status(tmp_path: Path) -> None:
    nothing = _lightbox(tmp_path, "status")
    assert nothing.returncode == 1
    assert "no OHIF viewer installed" in nothing.stdout
    install_stand_in(tmp_path, version="9.9.9")
    found = _lightbox(tmp_path, "status")
    assert found.returncode == 0, found.stdout + found.stderr
    assert "@ohif/app@9.9.9" in found.stdout


def test_install_refuses_a_wrong_integrity(tmp_path: Path) -> None:
    wrong = "sha512-" + "A" * 86 + "=="
    refused = _lightbox(tmp_path, "install", "--integrity", wrong)
    assert refused.returncode == 1
    assert "does not match its integrity" in refused.stdout
    assert not (tmp_path / "viewer" / "ohif" / "current.json").exists()
    assert not list((tmp_path / "viewer" / "ohif").rglob("index.html"))
