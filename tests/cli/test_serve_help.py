"""``lightbox serve --help``: every setting with its real default and what it accepts (enum
and literal values as written, never a Python repr or "(see docs)"), and every default shown
reads back as that default when set as the variable."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from app.cli.serve import SERVE_EPILOG, settings_help
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _leaves(model: type[BaseModel], prefix: str = "LIGHTBOX_") -> list[tuple[str, list[str]]]:
    """(variable, attribute path) of every leaf setting."""
    out: list[tuple[str, list[str]]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += [(v, [name, *p]) for v, p in _leaves(annotation, f"{prefix}{name.upper()}__")]
        else:
            out.append((f"{prefix}{name.upper()}", [name]))
    return out


def _line(variable: str) -> str:
    [line] = [item for item in settings_help() if item.startswith(f"{variable} (default ")]
    return line


def test_every_setting_with_its_default_and_accepted_values() -> None:
    lines = settings_help()
    leaves = _leaves(Settings)
    assert len(lines) == len(leaves)
    for variable, _path in leaves:
        line = _line(variable)
        assert "; accepts " in line, line
    text = "\n".join(lines)
    assert "(see docs)" not in text
    assert "<" + "Duplicate" not in text  # no Python repr such as <DuplicatePolicy.REJECT: ...>
    assert "Policy." not in text
    assert "'" not in "".join(line.split(")")[0] for line in lines)  # defaults are not reprs
    assert _line("LIGHTBOX_DUPLICATE_POLICY").startswith(
        "LIGHTBOX_DUPLICATE_POLICY (default reject; accepts reject | overwrite)"
    )
    assert "(default unset; accepts AES256 | aws:kms | aws:kms:dsse)" in _line(
        "LIGHTBOX_S3__SERVER_SIDE_ENCRYPTION"
    )
    assert "(default 204; accepts 200 | 204)" in _line("LIGHTBOX_QIDO_EMPTY_STATUS")
    assert "(default []; accepts a JSON list" in _line("LIGHTBOX_TRUSTED_PROXIES")
    assert '(default ["RS256", "ES256"]' in _line("LIGHTBOX_AUTH__OIDC_ALGORITHMS")
    assert "(default false; accepts true | false)" in _line("LIGHTBOX_ZERO_PREAMBLE")
    assert "accepts an integer >= 1 and <= 65535" in _line("LIGHTBOX_DIMSE__PORT")
    assert "(default info; accepts critical | error | warning | info | debug)" in _line(
        "LIGHTBOX_LOG_LEVEL"
    )


def _value(settings: Any, path: list[str]) -> Any:
    for name in path:
        settings = getattr(settings, name)
    return settings


def test_each_default_shown_reads_back_as_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    defaults = Settings()
    checked = 0
    for variable, path in _leaves(Settings):
        shown = _line(variable).split(" (default ", 1)[1].split("; accepts ", 1)[0]
        if shown == "unset" or isinstance(_value(defaults, path), SecretStr):
            assert _value(defaults, path) is None, variable
            continue
        with monkeypatch.context() as env:
            env.setenv(variable, shown)
            assert _value(Settings(), path) == _value(defaults, path), (variable, shown)
        checked += 1
    assert checked > 60


def test_serve_help_prints_them() -> None:
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "LIGHTBOX_DUPLICATE_POLICY (default reject; accepts reject | overwrite)" in done.stdout
    assert "LIGHTBOX_AUTH__REVOCATION_REFRESH_SECONDS (default 5.0" in done.stdout
    assert "(see docs)" not in done.stdout
    assert "an empty variable counts as unset" in SERVE_EPILOG
