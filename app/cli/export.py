"""``lightbox export``: studies or series as a PS3.10 file-set (a ZIP file or a directory, with a
DICOMDIR), the same archive WADO-RS sends for ``Accept: application/zip``."""

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.cli.root import cli, os_actor
from app.config import Settings


@cli.command()
def export(
    out: Annotated[
        Path, typer.Option(help="FILE.zip for a ZIP archive, else a directory (new or empty)")
    ],
    study: Annotated[list[str], typer.Option(help="StudyInstanceUID to export (repeatable)")],
    series: Annotated[
        list[str],
        typer.Option(help="only this SeriesInstanceUID of the one --study (repeatable)"),
    ] = [],  # noqa: B006 (typer's way of giving a list default)
) -> None:
    """Export studies (or series of one study) with a DICOMDIR (PS3.10 media layout)."""
    from app.dicom.target import Target
    from app.errors import LightboxError

    if series and len(study) != 1:
        raise typer.BadParameter("--series needs exactly one --study (the series' study)")
    try:
        if series:
            targets = [Target(study[0], uid) for uid in series]
        else:
            targets = [Target(uid) for uid in study]
    except LightboxError as exc:
        raise typer.BadParameter(exc.message) from None

    async def run() -> object:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.export.export(targets, out, actor=os_actor())

    try:
        result = asyncio.run(run())
    except LightboxError as exc:
        print(f"error: {exc.message} ({exc.http_status})", file=sys.stderr)
        sys.exit(1)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    from app.services.export import ExportResult

    assert isinstance(result, ExportResult)
    kind = "ZIP file" if result.as_zip else "directory"
    print(
        f"exported {result.instances} instances ({result.bytes / 1e6:.1f} MB) to {kind}"
        f" {result.path}"
    )
