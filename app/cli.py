"""The ``lightbox`` command: serve, db upgrade/downgrade, token, audit, fsck, gc, openapi,
conformance."""

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, cast

import typer
import uvicorn
from pydantic import BaseModel
from uvicorn.config import STARTUP_FAILURE

from app.config import Settings

# Heavy modules (the services, the migrations) are imported inside the commands that use them,
# so the `serve` supervisor process of a multi-worker server stays small.

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Lightbox, a DICOMweb PACS.")
db_cli = typer.Typer(no_args_is_help=True, help="Index database schema.")
cli.add_typer(db_cli, name="db")
token_cli = typer.Typer(no_args_is_help=True, help="Bearer tokens signed by the embedded key.")
cli.add_typer(token_cli, name="token")
audit_cli = typer.Typer(no_args_is_help=True, help="The audit trail.")
cli.add_typer(audit_cli, name="audit")


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
    _first_start_key(settings)
    scheme = "https" if ssl_certfile else "http"
    print(
        f"Lightbox: DICOMweb at {scheme}://{settings.host}:{settings.port}{settings.dicomweb_root}"
        f" (index {'SQLite' if settings.is_sqlite else 'PostgreSQL'},"
        f" storage {settings.resolved_storage_url().split('://')[0]})",
        flush=True,
    )
    from app.connections import ConnectionGuard, ConnectionLimits

    limits = ConnectionLimits(settings.server.header_timeout, settings.server.max_connections)
    # uvicorn's settings, the same for one process and for each of several workers
    options: dict[str, Any] = {
        "log_level": settings.log_level,
        "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None,
        # the request head deadline and the connection cap, in front of uvicorn's protocol:
        # uvicorn calls the guard as it would call a protocol class (app.connections)
        "http": cast("type[asyncio.Protocol]", ConnectionGuard(limits)),
        # no WebSocket routes: an upgrade would hand the connection to another protocol,
        # out of the guard's sight
        "ws": "none",
        "timeout_keep_alive": settings.server.keep_alive_timeout,
        "server_header": False,
        # uvicorn's default (FORWARDED_ALLOW_IPS, else 127.0.0.1), also under gunicorn, which
        # would pass its own
        "forwarded_allow_ips": None,
    }
    if settings.workers <= 1:
        config = uvicorn.Config(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            **options,
        )
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise typer.Exit(STARTUP_FAILURE)
        return
    # several workers: gunicorn's arbiter manages them (app.supervisor)
    from app.supervisor import gunicorn_options, serve_workers

    status = serve_workers(
        gunicorn_options(
            settings.host,
            settings.port,
            settings.workers,
            settings.worker_timeout,
            settings.log_level,
        ),
        options,
    )
    if status == STARTUP_FAILURE:  # gunicorn's status for a worker that could not start, too
        print("Lightbox: a worker failed to start (see above); stopping.", file=sys.stderr)
    raise typer.Exit(status)


def _first_start_key(settings: Settings) -> None:
    """Create the embedded signing key before the workers start; say how to get a token."""
    auth = settings.auth
    if not auth.enabled:
        print("WARNING: access control is OFF (LIGHTBOX_AUTH__ENABLED=false)", flush=True)
        return
    if not auth.local_key:
        return
    from app.auth.keys import LocalSigningKey

    path = LocalSigningKey.path_in(settings.data_dir)
    _key, created = LocalSigningKey.load_or_create(settings.data_dir)
    if created:
        command = sys.argv[0] if Path(sys.argv[0]).name == "lightbox" else "lightbox"
        print(
            f"Lightbox: created the token signing key {path}.\n"
            "  Every route needs a bearer token. Get an admin token with:\n"
            f"    {command} token create --subject admin"
            " --scope read --scope write --scope delete --scope admin --ttl 1d\n"
            "  (run it with the same LIGHTBOX_DATA_DIR), then send"
            " 'Authorization: Bearer <token>'.",
            flush=True,
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


def parse_ttl(value: str) -> int:
    """A duration such as ``90s``, ``15m``, ``8h``, ``7d`` or plain seconds, in seconds.

    >>> parse_ttl("7d"), parse_ttl("15m"), parse_ttl("3600")
    (604800, 900, 3600)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = value.strip().lower()
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    if not number.isdigit() or int(number) <= 0:
        raise typer.BadParameter(f"not a duration: {value!r} (e.g. 90s, 15m, 8h, 7d)")
    return int(number) * unit


@token_cli.command("create")
def token_create(
    subject: Annotated[str, typer.Option(help="who the token is for (the audit's actor)")],
    scope: Annotated[
        list[str], typer.Option(help="permission: read, write, delete, admin (repeatable)")
    ] = ["read"],  # noqa: B006 (typer's way of giving a list default)
    ttl: Annotated[str, typer.Option(help="lifetime: 90s, 15m, 8h, 7d")] = "1h",
    study: Annotated[
        list[str], typer.Option(help="restrict to this StudyInstanceUID (repeatable)")
    ] = [],  # noqa: B006
    patient: Annotated[
        list[str], typer.Option(help="restrict to this PatientID (repeatable)")
    ] = [],  # noqa: B006
) -> None:
    """Issue a bearer token signed by the embedded key (printed on standard output)."""
    from app.auth.keys import LocalSigningKey
    from app.auth.principal import Permission
    from app.auth.verify import TokenIssuer

    settings = Settings()
    scopes = [s for item in scope for s in item.replace(",", " ").split()]
    unknown = sorted(set(scopes) - {p.value for p in Permission})
    if unknown:
        raise typer.BadParameter(f"unknown scope {', '.join(unknown)} (read, write, delete, admin)")
    key, _created = LocalSigningKey.load_or_create(settings.data_dir)
    issuer = TokenIssuer(key, settings.auth.local_issuer, settings.auth.audience)
    seconds = parse_ttl(ttl)
    token = issuer.issue(subject, scopes, seconds, study_uids=study, patient_ids=patient)

    async def audit() -> None:
        from app.services.container import open_services

        async with open_services(settings) as services:
            await services.audit.record(
                action="token-issued",
                outcome="success",
                actor=os.environ.get("USER") or "cli",
                detail=f"subject={subject} scope={' '.join(scopes)} ttl={seconds}s"
                + (f" studies={','.join(study)}" if study else "")
                + (f" patients={','.join(patient)}" if patient else ""),
                study_uid=study[0] if len(study) == 1 else None,
                patient_id=patient[0] if len(patient) == 1 else None,
            )

    try:
        asyncio.run(audit())
    except Exception as exc:  # the token is still valid; say that it went unaudited
        print(f"warning: the issued token could not be audited: {exc}", file=sys.stderr)
    print(token)


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit trail's hash chain; exit status 1 when a row was changed or removed."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.audit.verify()

    report = asyncio.run(run())
    print(f"{report.rows} audit events checked")
    if report.pending:
        print(
            f"{report.pending} audit events committed with their writes are not chained yet "
            "(the server chains them; after a crash, when it starts again)"
        )
    for problem in report.problems[:50]:
        print(f"  {problem}")
    print("OK: the chain is intact" if report.ok else "TAMPERING DETECTED")
    sys.exit(0 if report.ok else 1)


@audit_cli.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or dicom (PS3.15 A.5 XML)")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="from this time (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="before this time (ISO 8601)")] = None,
) -> None:
    """Export the audit trail in chain order: JSON lines, or DICOM audit messages (XML)."""
    from datetime import datetime

    from app.services.audit import AuditFilter
    from app.services.audit.messages import audit_message

    if fmt not in ("jsonl", "dicom"):
        raise typer.BadParameter("--format is jsonl or dicom")

    def when(value: str | None, name: str) -> datetime | None:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
        except ValueError:
            raise typer.BadParameter(f"{name} is not an ISO 8601 date-time: {value!r}") from None

    filters = AuditFilter(since=when(since, "--since"), until=when(until, "--until"))
    out = output.open("w", encoding="utf-8") if output else sys.stdout

    async def run() -> int:
        from app.services.container import open_services

        n = 0
        async with open_services(Settings()) as services:
            async for row in services.audit.rows(filters):
                line = json.dumps(row, sort_keys=True) if fmt == "jsonl" else audit_message(row)
                out.write(line + "\n")
                n += 1
        return n

    try:
        count = asyncio.run(run())
    finally:
        if output:
            out.close()
    if output:
        print(f"wrote {count} audit events to {output}")


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


@db_cli.command("backfill")
def db_backfill() -> None:
    """Fill index columns that later releases record at ingest, for instances stored before
    (today: whether each blob has the PS3.10 preamble, which lets retrieve send a Content-Length).
    Safe while the server runs, and to repeat."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.backfill()

    report = asyncio.run(run())
    print(f"recorded {report.recorded} instances; {report.missing_blobs} blobs missing (see fsck)")
    sys.exit(1 if report.missing_blobs else 0)


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
