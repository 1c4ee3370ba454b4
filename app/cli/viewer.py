"""``lightbox viewer``: the OHIF v3 viewer served at ``/viewer/`` (issue 22, point 3).

``install`` fetches the pinned ``@ohif/app`` build from the npm registry, checks its integrity
and installs it under the data directory (:mod:`app.ohif`); the running servers serve it from
their next request (nothing to restart: they look for it per request, cheaply). ``status`` says
what is installed.
"""

from typing import Annotated

import typer

from app import ohif
from app.cli.root import cli
from app.config import Settings

__all__ = ["viewer_cli"]

viewer_cli = typer.Typer(no_args_is_help=True, help="The OHIF viewer served at /viewer/.")
cli.add_typer(viewer_cli, name="viewer")


@viewer_cli.command("install")
def viewer_install(
    version: Annotated[
        str, typer.Option(help=f"the @ohif/app version (pinned: {', '.join(ohif.PINNED)})")
    ] = ohif.VERSION,
    integrity: Annotated[
        str | None,
        typer.Option(help="the tarball's expected sha512-... (for a version not pinned here)"),
    ] = None,
) -> None:
    """Fetch the OHIF viewer build from the npm registry (integrity-checked) and serve it at
    /viewer/ on the same origin, signed in with the session of the pages."""
    settings = Settings()
    try:
        done, pinned = ohif.install(settings.data_dir, version, integrity)
    except ohif.OhifUnavailable as exc:
        print(f"error: {exc}")
        raise typer.Exit(1) from None
    print(f"installed {ohif.PACKAGE}@{done.version} in {done.dist}")
    print(f"integrity {done.integrity}")
    if not pinned:
        print(
            "note: this version is not pinned by Lightbox: its integrity is the registry's "
            "(give --integrity to pin it yourself)"
        )
    print("served at /viewer/ (the study pages offer 'Open in OHIF')")


@viewer_cli.command("status")
def viewer_status() -> None:
    """Which OHIF build is installed (exit status 1 when none is)."""
    found = ohif.installed(Settings().data_dir)
    if found is None:
        print("no OHIF viewer installed: lightbox viewer install")
        raise typer.Exit(1)
    print(f"{ohif.PACKAGE}@{found.version} in {found.dist} ({found.integrity})")
