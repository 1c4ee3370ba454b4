"""``lightbox token``: bearer tokens signed by the embedded key, recorded in the index.

``create`` issues one (kind ``cli``) through the same service as the web login and share links,
``list`` shows what was issued, ``revoke`` puts a token on the deny list every server checks.
Each takes ``--data-dir`` with serve's meaning: the signing key and the SQLite index live there,
so a token made for a server started with ``--data-dir X`` must be made with ``--data-dir X``.
"""

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.cli.root import token_cli
from app.config import Settings

if TYPE_CHECKING:
    from app.services.container import Services

T = TypeVar("T")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="the server's data directory (its signing key, and the SQLite index by default): "
        "the same as `lightbox serve --data-dir` (LIGHTBOX_DATA_DIR)",
    ),
]


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


def _settings(data_dir: Path | None) -> Settings:
    return Settings() if data_dir is None else Settings(data_dir=data_dir)


def _operator() -> str:
    """Who runs the command, for the registry and the audit trail."""
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


def _with_services(settings: Settings, use: "Callable[[Services], Awaitable[T]]") -> T:
    """Run ``use`` on open services; a Lightbox error is a message and exit status 1."""
    from app.errors import LightboxError, Unavailable
    from app.services.container import open_services

    advice = "  (is LIGHTBOX_DATABASE_URL right, and `lightbox db upgrade` done?)"

    async def run() -> T:
        async with open_services(settings) as services:
            return await use(services)

    try:
        return asyncio.run(run())
    except LightboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if isinstance(exc, Unavailable) and exc.__cause__ is not None:
            print(f"  {_first_line(exc.__cause__)}\n{advice}", file=sys.stderr)
        raise typer.Exit(1) from None
    except Exception as exc:  # the index cannot be reached or is not migrated
        print(f"error: the index cannot be used: {_first_line(exc)}\n{advice}", file=sys.stderr)
        raise typer.Exit(1) from None


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


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
    data_dir: DataDirOption = None,
) -> None:
    """Issue a bearer token signed by the embedded key (printed on standard output; its id on
    standard error)."""
    from app.auth.principal import Permission

    scopes = [s for item in scope for s in item.replace(",", " ").split()]
    unknown = sorted(set(scopes) - {p.value for p in Permission})
    if unknown:
        raise typer.BadParameter(f"unknown scope {', '.join(unknown)} (read, write, delete, admin)")
    seconds = parse_ttl(ttl)
    settings = _settings(data_dir)
    if not settings.auth.local_key:
        print(
            "error: the embedded issuer is off (LIGHTBOX_AUTH__LOCAL_KEY=false): tokens come "
            "from the OpenID Connect issuer",
            file=sys.stderr,
        )
        raise typer.Exit(1)

    async def issue(services: "Services") -> tuple[str, str]:
        from app.services.tokens import TokenKind

        issued = await services.tokens.issue(
            TokenKind.CLI,
            subject,
            scopes,
            seconds,
            studies=study,
            patients=patient,
            created_by=_operator(),
        )
        return issued.token, issued.record.jti

    token, jti = _with_services(settings, issue)
    print(f"token id (jti) {jti}; `lightbox token revoke {jti}` revokes it", file=sys.stderr)
    print(token)


@token_cli.command("list")
def token_list(
    all_: Annotated[
        bool, typer.Option("--all", help="also expired and revoked tokens (default: active)")
    ] = False,
    subject: Annotated[str | None, typer.Option(help="only this subject's tokens")] = None,
    kind: Annotated[
        str | None, typer.Option(help="only tokens of this kind: cli, session, share")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="at most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one token each")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """List the tokens issued here, newest first (never the tokens themselves)."""
    from app.services.tokens import TokenKind, TokenSearch, TokenState, record_json

    if kind is not None and kind not in {k.value for k in TokenKind}:
        raise typer.BadParameter(
            f"unknown kind {kind!r} (cli, session, share)", param_hint="--kind"
        )
    filters = TokenSearch(subject=subject, kind=kind, state=None if all_ else TokenState.ACTIVE)
    records, total = _with_services(
        _settings(data_dir), lambda s: s.tokens.list(filters, limit=limit)
    )
    now = datetime.now(UTC)
    if as_json:
        for record in records:
            print(json.dumps(record_json(record, now)))
        return
    if not records:
        print("no tokens" if all_ else "no active tokens (--all shows expired and revoked ones)")
        return
    for record in records:
        item = record_json(record, now)
        restricted = ""
        if record.study_uids:
            restricted += f" studies={','.join(record.study_uids)}"
        if record.patient_ids:
            restricted += f" patients={','.join(record.patient_ids)}"
        print(
            f"{record.jti}  {item['state']:<7} {record.kind:<7} {record.subject}"
            f"  scope={' '.join(record.scopes)}{restricted}"
            f"  expires {item['expires_at']}  by {record.created_by or '-'}"
            + (
                f"  revoked {item['revoked_at']} by {record.revoked_by}"
                if record.revoked_at
                else ""
            )
        )
    if total > len(records):
        print(f"({total - len(records)} more; --limit shows more)")


@token_cli.command("revoke")
def token_revoke(
    jti: Annotated[str, typer.Argument(help="the token's id (jti), from `lightbox token list`")],
    reason: Annotated[str | None, typer.Option(help="why (kept with the record)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a token: every server refuses it within LIGHTBOX_AUTH__REVOCATION_REFRESH_SECONDS."""
    record = _with_services(
        _settings(data_dir), lambda s: s.tokens.revoke(jti, by=_operator(), reason=reason)
    )
    assert record.revoked_at is not None
    print(
        f"revoked {record.jti} ({record.kind} token of {record.subject})"
        f" at {record.revoked_at.isoformat()} by {record.revoked_by}"
    )
