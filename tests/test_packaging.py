"""The project's packaging and developer commands: licence metadata as SPDX (PEP 639, no
setuptools deprecation warnings), ``make run`` installing only the runtime dependencies."""

import shutil
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_has_an_spdx_licence_and_no_deprecation_warnings(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "meta"
    out.mkdir()
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta;"
            " print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    log = built.stdout + built.stderr
    assert "deprecat" not in log.lower(), log
    dist_info = out / built.stdout.strip().splitlines()[-1]
    metadata = Parser().parsestr((dist_info / "METADATA").read_text())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("pillow") for r in requires)
    assert len([r for r in requires if r.lower().startswith("pillow")]) == 1


def _make(target: str, tmp_path: Path) -> str:
    """The commands ``make TARGET`` would run in a fresh checkout (``make -n``: none runs)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = subprocess.run(
        ["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_run_installs_the_runtime_only(tmp_path: Path) -> None:
    run = _make("run", tmp_path)
    assert "pip install --quiet -e .\n" in run
    assert "[dev]" not in run
    assert "lightbox serve" in run
    test = _make("test", tmp_path)
    assert "pip install --quiet -e '.[dev]'" in test
    assert "pytest" in test


def test_dev_toolchain_is_not_a_runtime_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for tool in ("pytest", "moto", "playwright", "mypy", "ruff", "hypothesis"):
        assert tool not in runtime, tool
