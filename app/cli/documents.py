"""``lightbox openapi`` and ``lightbox conformance``: generated documents."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.root import cli
from app.config import Settings


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="where to write it")] = Path("openapi/openapi.json"),
) -> None:
    """Write the OpenAPI document (a test fails when the committed one is stale)."""
    from app.main import create_app

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(openapi_text(create_app(Settings())))
    print(f"wrote {output}")


@cli.command()
def conformance(
    output: Annotated[Path, typer.Option(help="where to write it")] = Path("docs/conformance.md"),
) -> None:
    """Write the conformance statement (CAP-03) from the code and the default settings."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(conformance_text())
    print(f"wrote {output}")


def conformance_text() -> str:
    """The conformance statement for the default settings (a test fails when the file drifts)."""
    from app.api.capabilities import conformance_markdown
    from app.dimse.conformance import dimse_conformance_markdown
    from app.main import create_app

    settings = Settings(_env_file=None)
    http = conformance_markdown(create_app(settings), settings)
    return http.rstrip("\n") + "\n" + dimse_conformance_markdown(settings).rstrip("\n") + "\n"


def openapi_text(app: Any) -> str:
    """The canonical text of the OpenAPI document."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
