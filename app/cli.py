"""The ``lightbox`` command: serve, db upgrade/downgrade, fsck, gc, openapi, conformance."""

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import BaseModel

from app.config import Settings

# Heavy modules (the services, the migrations) are imported inside the commands that use them,
# so the `serve` supervisor process of a multi-worker server stays small.

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Lightbox, a DICOMweb PACS.")
db_cli = typer.Typer(no_args_is_help=True, help="Index database schema.")
cli.add_typer(db_cli, name="db")


def _settings_help(model: type[BaseModel] = Settings, prefix: str = "LIGHTBOX_") -> list[str]:
    lines = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += _settings_help(annotation, f"{prefix}{name.upper()}__")
            continue
        default = info.default if info.default_factory is None else "(see docs)"
        default = str(default) if isinstance(default, Path) else default
        lines.append(f"{prefix}{name.upper()} (default {default!r}): {info.description or ''}")
    return lines


SERVE_EPILOG = "Settings (environment variables):\n\n" + "\n\n".join(_settings_help())


@cli.command(epilog=SERVE_EPILOG)
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (LIGHTBOX_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (LIGHTBOX_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="embedded default's data dir")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
) -> None:
    """Run the DICOMweb server (embedded default: SQLite + files under ./lightbox-data)."""
    for env, value in (
        ("LIGHTBOX_HOST", host),
        ("LIGHTBOX_PORT", port),
        ("LIGHTBOX_WORKERS", workers),
        ("LIGHTBOX_DATA_DIR", data_dir),
    ):
        if value is not None:
            os.environ[env] = str(value)
    settings = Settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate is not False and (settings.is_sqlite or settings.auto_migrate):
        _migrate_in_subprocess(settings.resolved_database_url())
    # the workers read the same settings; the schema is already current
    os.environ["LIGHTBOX_AUTO_MIGRATE"] = "false"
    scheme = "https" if ssl_certfile else "http"
    print(
        f"Lightbox: DICOMweb at {scheme}://{settings.host}:{settings.port}{settings.dicomweb_root}"
        f" (index {'SQLite' if settings.is_sqlite else 'PostgreSQL'},"
        f" storage {settings.resolved_storage_url().split('://')[0]})",
        flush=True,
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        timeout_keep_alive=30,
        server_header=False,
    )


def _migrate_in_subprocess(url: str) -> None:
    """Apply migrations in a child process: the server's supervisor never loads SQLAlchemy."""
    import subprocess

    env = {**os.environ, "LIGHTBOX_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "app", "db", "upgrade"], env=env, check=True)


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the schema migrations to LIGHTBOX_DATABASE_URL."""
    from app.index import migrate

    settings = Settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate.upgrade(settings.resolved_database_url(), revision))
    print(f"index schema at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert the schema to an earlier revision ('base' drops everything)."""
    from app.index import migrate

    asyncio.run(migrate.downgrade(Settings().resolved_database_url(), revision))


@cli.command()
def fsck(
    quick: Annotated[bool, typer.Option(help="skip re-hashing blob contents")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check that index rows and blobs agree; exit status 1 when they do not."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.fsck(verify_hashes=not quick)

    report = asyncio.run(run())
    summary = {
        "rows_checked": report.rows_checked,
        "blobs_checked": report.blobs_checked,
        "missing_blobs": report.missing_blobs,
        "size_mismatches": report.size_mismatches,
        "hash_mismatches": report.hash_mismatches,
        "unreferenced_blobs": report.unreferenced_blobs,
        "ok": report.ok,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"rows checked {report.rows_checked}, blobs checked {report.blobs_checked}")
        for label in ("missing_blobs", "size_mismatches", "hash_mismatches", "unreferenced_blobs"):
            items = summary[label]
            assert isinstance(items, list)
            print(f"{label.replace('_', ' ')}: {len(items)}")
            for item in items[:20]:
                print(f"  {item}")
        print("OK" if report.ok else "PROBLEMS FOUND")
    sys.exit(0 if report.ok else 1)


@cli.command()
def gc(
    grace_minutes: Annotated[
        int, typer.Option(help="keep unreferenced blobs younger than this")
    ] = 60,
    dry_run: Annotated[bool, typer.Option(help="only list what would be removed")] = False,
) -> None:
    """Remove blobs that no index row references (left by crashes), after a grace period."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.gc(
                grace=timedelta(minutes=grace_minutes), dry_run=dry_run
            )

    report = asyncio.run(run())
    verb = "would remove" if dry_run else "removed"
    print(
        f"scanned {report.scanned} blobs; {verb} {len(report.removed)};"
        f" kept {report.kept_young} younger than the grace period;"
        f" {report.temp_files_removed} stale temp files"
    )


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
    from app.main import create_app

    settings = Settings(_env_file=None)
    return conformance_markdown(create_app(settings), settings)


def openapi_text(app: Any) -> str:
    """The canonical text of the OpenAPI document."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    cli()
