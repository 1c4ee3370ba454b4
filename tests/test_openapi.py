"""The committed OpenAPI document matches the routes (regenerate with ``lightbox openapi``)."""

from pathlib import Path

from app.cli import openapi_text
from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_is_current() -> None:
    generated = openapi_text(create_app(Settings(_env_file=None)))
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert generated == committed, "openapi/openapi.json is stale: run `lightbox openapi`"
