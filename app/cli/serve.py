"""``lightbox serve``: the HTTP server (one process, or gunicorn workers)."""

import asyncio
import contextlib
import json
import os
import sys
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeGuard,
    Union,
    cast,
    get_args,
    get_origin,
)

import typer
import uvicorn
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from uvicorn.config import STARTUP_FAILURE

from app.cli.dimse import start_child
from app.cli.root import cli
from app.config import AE_TITLE_PATTERN, Settings

if TYPE_CHECKING:
    from app import telemetry


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _accepted(annotation: Any, metadata: list[Any]) -> str:
    """What a setting accepts, in words: enum and literal values as they are written, numbers
    with their bounds, lists as JSON.

    >>> from app.config import DuplicatePolicy
    >>> _accepted(DuplicatePolicy, []), _accepted(bool, []), _accepted(int | None, [])
    ('reject | overwrite', 'true | false', 'an integer')
    """
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (Union, UnionType) and len(args) == 1:
        return _accepted(args[0], metadata)
    if origin in (Union, UnionType):
        return " or ".join(_accepted(a, []) for a in args)
    if origin is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _accepted(inner, [*metadata, *extra])
    if origin is list:
        item = args[0] if args else str
        kind = "objects" if _is_model(item) else "values"
        return f"a JSON list of {kind}" + (
            f" ({_accepted(item, [])})" if isinstance(item, type) and issubclass(item, Enum) else ""
        )
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(str(member.value) for member in annotation)
    if annotation is bool:
        return "true | false"
    bounds = []
    for item in metadata:
        for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, name, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    if annotation is int:
        return "an integer" + (f" {' and '.join(bounds)}" if bounds else "")
    if annotation is float:
        return "a number" + (f" {' and '.join(bounds)}" if bounds else "")
    if annotation is Path:
        return "a path"
    if annotation is SecretStr:
        return "a secret (text)"
    patterns = [p for m in metadata if (p := getattr(m, "pattern", None))]
    if AE_TITLE_PATTERN in patterns:
        return "an AE title (1 to 16 characters of the default repertoire, no backslash)"
    return "text" + (f" matching {patterns[0]}" if patterns else "")


def _default(info: FieldInfo) -> str:
    """A setting's real default, as it would be written in the variable (``unset`` for none).

    >>> from app.config import AE_TITLE_PATTERN, Settings
    >>> _default(Settings.model_fields["duplicate_policy"])
    'reject'
    >>> _default(Settings.model_fields["trusted_proxies"]), _default(Settings.model_fields["port"])
    ('[]', '8080')
    """
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(
            value, default=lambda v: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
        )
    if isinstance(value, SecretStr):
        return "(a secret)"
    return str(value)


def settings_help(model: type[BaseModel] = Settings, prefix: str = "LIGHTBOX_") -> list[str]:
    """Every setting as an environment variable with its real default, what it accepts and
    what it does (``serve --help``)."""
    lines = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if _is_model(annotation):
            lines += settings_help(annotation, f"{prefix}{name.upper()}__")
            continue
        lines.append(
            f"{prefix}{name.upper()} (default {_default(info)}; accepts "
            f"{_accepted(annotation, list(info.metadata))}): {info.description or ''}"
        )
    return lines


SERVE_EPILOG = (
    "Settings (environment variables; an empty variable counts as unset):\n\n"
    + "\n\n".join(settings_help())
)


@cli.command(epilog=SERVE_EPILOG)
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (LIGHTBOX_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (LIGHTBOX_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="embedded default's data dir")] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM) (LIGHTBOX_SSL_CERTFILE)")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="TLS private key (PEM) (LIGHTBOX_SSL_KEYFILE)")
    ] = None,
) -> None:
    """Run the DICOMweb server, and the DIMSE listener beside it (embedded default: SQLite +
    files under ./lightbox-data)."""
    for env, value in (
        ("LIGHTBOX_HOST", host),
        ("LIGHTBOX_PORT", port),
        ("LIGHTBOX_WORKERS", workers),
        ("LIGHTBOX_DATA_DIR", data_dir),
        ("LIGHTBOX_SSL_CERTFILE", ssl_certfile),
        ("LIGHTBOX_SSL_KEYFILE", ssl_keyfile),
    ):
        if value is not None:
            os.environ[env] = str(value)
    settings = Settings()
    from app.logs import configure_logging

    # every record of this process (and of uvicorn, and gunicorn's arbiter) in one format
    configure_logging(settings.log_level, settings.log_format, force=True)
    ssl_certfile, ssl_keyfile = settings.ssl_certfile, settings.ssl_keyfile
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    scheme = "https" if ssl_certfile else "http"
    site = f"{scheme}://{_shown_host(settings.host)}:{settings.port}"
    migrate = settings.auto_migrate is not False and (
        settings.is_sqlite or bool(settings.auto_migrate)
    )
    users = settings.auth.enabled and settings.auth.local_key
    steps = ""
    if migrate or users:
        steps = _prepare_in_subprocess(
            settings.resolved_database_url(), migrate=migrate, first_start=site if users else None
        )
    # the workers read the same settings; the schema is already current
    os.environ["LIGHTBOX_AUTO_MIGRATE"] = "false"
    _first_start_key(settings)
    print(
        f"Lightbox: web pages at {site}/, DICOMweb at {site}{settings.dicomweb_root}"
        f" (index {'SQLite' if settings.is_sqlite else 'PostgreSQL'},"
        f" storage {settings.resolved_storage_url().split('://')[0]})",
        flush=True,
    )
    if steps:
        print(steps, end="" if steps.endswith("\n") else "\n", flush=True)
    with contextlib.ExitStack() as stack:
        listener = None
        if settings.metrics.enabled:
            from app import telemetry

            # before any worker or the DIMSE listener imports prometheus-client: all the
            # processes of the run share this directory (app.telemetry)
            stack.enter_context(telemetry.run_directory())
            if settings.metrics.port is not None:
                listener = telemetry.start_listener(settings.metrics.host, settings.metrics.port)
                stack.callback(listener.stop)
        # the DIMSE listener: one child process, whatever the number of HTTP workers
        dimse = start_child(settings)
        try:
            status = _serve_http(settings, ssl_certfile, ssl_keyfile, listener)
        finally:
            if dimse is not None:
                dimse.stop()
    if status == STARTUP_FAILURE:  # gunicorn's status for a worker that could not start, too
        print("Lightbox: a worker failed to start (see above); stopping.", file=sys.stderr)
    if status:
        raise typer.Exit(status)


def _serve_http(
    settings: Settings,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    listener: "telemetry.Listener | None",
) -> int:
    """Run uvicorn (one process) or gunicorn's workers until stopped; the exit status."""
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
        # the app logs each request itself, without the query string (app.api.observe), and
        # uvicorn writes through the handler configure_logging installed
        "access_log": False,
        "log_config": None,
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
        return 0 if server.started else STARTUP_FAILURE
    # several workers: gunicorn's arbiter manages them (app.supervisor)
    from app.supervisor import gunicorn_options, serve_workers

    return serve_workers(
        gunicorn_options(
            settings.host,
            settings.port,
            settings.workers,
            settings.worker_timeout,
            settings.log_level,
            log_format=settings.log_format,
            metrics_listener=listener,
        ),
        options,
    )


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
        # how to get a token is said by the server itself, on every start while no admin
        # token is active (app.main.token_hint)
        print(
            f"Lightbox: created the token signing key {path.resolve()}: it signs every token"
            " (back it up with the index, see docs/operations.md).",
            flush=True,
        )


def _shown_host(host: str) -> str:
    """The host to show in a URL: a wildcard address is reached on the loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _prepare_in_subprocess(url: str, *, migrate: bool, first_start: str | None) -> str:
    """Apply migrations and look for an administrator in a child process (the server's
    supervisor never loads SQLAlchemy); what it says about the first administrator is returned,
    to be printed with the server's own lines."""
    import subprocess

    env = {**os.environ, "LIGHTBOX_DATABASE_URL": url}
    command = [sys.executable, "-m", "app", "db", "prepare"]
    command.append("--migrate" if migrate else "--no-migrate")
    if first_start is not None:
        command += ["--first-start", first_start]
    done = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout
