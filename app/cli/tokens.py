"""``lightbox token``: bearer tokens signed by the embedded key."""

import asyncio
import os
import sys
from typing import Annotated

import typer

from app.cli.root import token_cli
from app.config import Settings


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
