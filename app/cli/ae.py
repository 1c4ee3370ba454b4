"""``lightbox ae``: the remote AEs (DICOM peers) registered in the index.

The same registry as ``/api/aes``: every replica sees what is added here. Peers defined in the
settings (``LIGHTBOX_DIMSE__REMOTE_AES``) are listed too, and cannot be changed here.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from app.cli.root import ae_cli, os_actor
from app.config import Settings
from app.errors import LightboxError

T = TypeVar("T")


def run_audited(action: str, detail: str, call: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``call(services, write_audit)`` on fresh services and record the command's audit row,
    which stands for the rows its writes committed (as an HTTP request's row does); a refusal
    (LightboxError) is printed and exits with status 1."""
    from app.services.audit import AuditRecord, Outcome
    from app.services.container import open_services

    async def run() -> T:
        async with open_services(Settings()) as services:
            write = services.audit.for_write(actor=os_actor(), source="cli")

            async def audit(outcome: str, text: str) -> None:
                await services.audit.record(
                    AuditRecord(
                        action=action,
                        outcome=outcome,
                        actor=os_actor(),
                        source="cli",
                        detail=text,
                        supersedes=write.release(),
                    )
                )

            try:
                result = await call(services, write)
            except LightboxError as exc:
                await audit(Outcome.FAILURE, f"{detail}: {exc.message}")
                raise
            await audit(Outcome.SUCCESS, detail)
            return result

    try:
        return asyncio.run(run())
    except LightboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise typer.Exit(1) from None


@ae_cli.command("add")
def ae_add(
    ae_title: Annotated[str, typer.Argument(help="the peer's AE title (up to 16 characters)")],
    host: Annotated[str, typer.Argument(help="host name or IP address")],
    port: Annotated[int, typer.Argument(help="DIMSE port")],
    tls: Annotated[bool, typer.Option(help="open associations to it over TLS")] = False,
    description: Annotated[str, typer.Option(help="free text shown to administrators")] = "",
) -> None:
    """Register a remote AE: a C-MOVE destination, a source for `lightbox pull`."""
    entry = run_audited(
        "ae-add",
        f"ae-add {ae_title} {host}:{port}",
        lambda services, write: services.aes.add(
            ae_title, host, port, tls=tls, description=description, audit=write
        ),
    )
    print(f"added {entry.ae_title} at {entry.address}{' (TLS)' if entry.tls else ''}")


@ae_cli.command("remove")
def ae_remove(
    ae_title: Annotated[str, typer.Argument(help="the AE title to forget")],
) -> None:
    """Forget a remote AE registered with `lightbox ae add`."""
    entry = run_audited(
        "ae-remove",
        f"ae-remove {ae_title}",
        lambda services, write: services.aes.remove(ae_title, audit=write),
    )
    print(f"removed {entry.ae_title} ({entry.address})")


@ae_cli.command("list")
def ae_list(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
) -> None:
    """List the known remote AEs: those of the settings and those registered."""
    from app.services.container import open_services

    async def run() -> Any:
        async with open_services(Settings()) as services:
            return await services.aes.list()

    entries = asyncio.run(run())
    if as_json:
        fields = ("ae_title", "host", "port", "tls", "description", "source")
        print(json.dumps([{f: getattr(e, f) for f in fields} for e in entries], indent=2))
        return
    if not entries:
        print("no remote AEs (add one with `lightbox ae add TITLE HOST PORT`)")
        return
    width = max(len(e.ae_title) for e in entries)
    for e in entries:
        flags = " tls" if e.tls else ""
        note = f"  {e.description}" if e.description else ""
        print(f"{e.ae_title:<{width}}  {e.address:<28} {e.source}{flags}{note}")
